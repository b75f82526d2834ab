// The page's client (@mobilesam/client over gRPC-web), on the origin that served the page
// (or the one named by `?server=http://host:port`). A bearer token for servers started with
// one goes in the URL fragment, `#token=...` (fragments are not sent to servers or logged).
import { createClient, type MobilesamClient } from "@mobilesam/client";

/** The server's base URL: `?server=` or the page's own origin. */
export function serverUrl(): string {
  const param = new URLSearchParams(window.location.search).get("server");
  return param ?? window.location.origin;
}

/** The bearer token from `#token=`, if any. */
function bearerToken(): string | undefined {
  return new URLSearchParams(window.location.hash.replace(/^#/, "")).get("token") ?? undefined;
}

/** A client for the server at `baseUrl`. */
export function connect(baseUrl: string = serverUrl()): MobilesamClient {
  return createClient(baseUrl, { token: bearerToken() });
}
