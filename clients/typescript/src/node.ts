// The Node entry: gRPC over HTTP/2 (connect-node), or gRPC-web over fetch with
// `transport: "grpc-web"`. String images are file paths.
import { readFile } from "node:fs/promises";
import { Http2SessionManager, createGrpcTransport } from "@connectrpc/connect-node";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { ArgumentError } from "./errors.js";
import { MobilesamClient, type ClientOptions, type Platform } from "./client.js";

export * from "./api.js";

/** PEM text or bytes as Node's TLS options take them. */
function pem(v: string | Uint8Array | undefined): string | Buffer | undefined {
  return v === undefined || typeof v === "string" ? v : Buffer.from(v);
}

const platform: Platform = {
  transport(baseUrl, options, interceptors) {
    const kind = options.transport ?? "grpc";
    if (kind === "grpc-web") {
      if (options.tls !== undefined) throw new ArgumentError("tls options need transport \"grpc\"");
      return { transport: createGrpcWebTransport({ baseUrl, useBinaryFormat: true, interceptors }), close: () => undefined };
    }
    if (kind !== "grpc") throw new ArgumentError(`transport must be "grpc" or "grpc-web", found ${JSON.stringify(kind)}`);
    if (options.tls !== undefined && !baseUrl.startsWith("https:")) {
      throw new ArgumentError("tls options need an https:// URL");
    }
    const sessionManager = new Http2SessionManager(
      baseUrl,
      { idleConnectionTimeoutMs: 15_000 },
      options.tls ? { ca: pem(options.tls.ca), cert: pem(options.tls.cert), key: pem(options.tls.key) } : undefined,
    );
    return {
      transport: createGrpcTransport({ baseUrl, sessionManager, interceptors, useBinaryFormat: true }),
      close: () => sessionManager.abort(),
    };
  },
  async readImage(path) {
    try {
      return new Uint8Array(await readFile(path));
    } catch (error) {
      throw new ArgumentError(`cannot read the image ${path}: ${(error as Error).message}`);
    }
  },
};

/** A client of the server at `url` (`http://host:port`, `https://...` or `host:port`). */
export function createClient(url: string, options: ClientOptions = {}): MobilesamClient {
  return new MobilesamClient(url, options, platform);
}
