// The browser entry (and `@mobilesam/client/web` anywhere fetch exists): gRPC-web over
// fetch, the transport browsers can use. `mobilesam serve` answers gRPC-web on its gRPC port.
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { ArgumentError } from "./errors.js";
import { MobilesamClient, type ClientOptions, type Platform } from "./client.js";

export * from "./api.js";

const platform: Platform = {
  transport(baseUrl, options, interceptors) {
    if (options.transport !== undefined && options.transport !== "grpc-web") {
      throw new ArgumentError(`transport ${JSON.stringify(options.transport)}: this entry speaks gRPC-web only (use the Node entry for "grpc")`);
    }
    if (options.tls !== undefined) throw new ArgumentError("tls options need the Node entry (browsers use their own trust store)");
    return { transport: createGrpcWebTransport({ baseUrl, useBinaryFormat: true, interceptors }), close: () => undefined };
  },
  async readImage(url) {
    const response = await fetch(url);
    if (!response.ok) throw new ArgumentError(`cannot fetch the image ${url}: HTTP ${response.status}`);
    return new Uint8Array(await response.arrayBuffer());
  },
};

/** A client of the server at `url` (default: the page's own origin) over gRPC-web. */
export function createClient(url?: string, options: ClientOptions = {}): MobilesamClient {
  const base = url ?? (globalThis as { location?: { origin: string } }).location?.origin;
  if (!base) throw new ArgumentError("createClient needs the server's URL");
  return new MobilesamClient(base, options, platform);
}
