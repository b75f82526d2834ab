// The SegmentAnything client over gRPC-web, on the origin that served the page (or the
// one named by `?server=http://host:port`). A bearer token for servers started with one
// goes in the URL fragment, `#token=...` (fragments are not sent to servers or logged).
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { SegmentAnything } from "./gen/mobilesam/v1/mobilesam_pb";

export type SamClient = Client<typeof SegmentAnything>;

/** The server's base URL: `?server=` or the page's own origin. */
export function serverUrl(): string {
  const param = new URLSearchParams(window.location.search).get("server");
  return param ?? window.location.origin;
}

/** The bearer token from `#token=`, if any. */
function bearerToken(): string | null {
  return new URLSearchParams(window.location.hash.replace(/^#/, "")).get("token");
}

/** A client for the server at `baseUrl`. */
export function connect(baseUrl: string = serverUrl()): SamClient {
  const token = bearerToken();
  const interceptors: Interceptor[] = token
    ? [
        (next) => (request) => {
          request.header.set("authorization", `Bearer ${token}`);
          return next(request);
        },
      ]
    : [];
  const transport = createGrpcWebTransport({ baseUrl, useBinaryFormat: true, interceptors });
  return createClient(SegmentAnything, transport);
}
