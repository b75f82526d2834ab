// The page's SetImage calls as they go over the wire (gRPC-web, binary): an independent
// reading of the request bodies, so the tests do not take the page's word for what it sent.
import { createHash } from "node:crypto";

/** One protobuf varint of `bytes` at `at`: `[value, next offset]` (as a Number; the
 * fields read here are small). */
function varint(bytes, at) {
  let value = 0;
  let shift = 0;
  for (;;) {
    const byte = bytes[at++];
    value += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return [value, at];
    shift += 7;
  }
}

/** The fields of a `mobilesam.v1.SetImage` request body (gRPC-web: a 5-byte frame header,
 * then the message): `{ image: bytes length, imageDigest: their SHA-256 (hex, "" without
 * bytes), sessionId, imageSha256, frameIndex (undefined when absent), prefetch }`. */
export function parseSetImage(body) {
  const length = body.readUInt32BE(1);
  const message = body.subarray(5, 5 + length);
  const out = { image: 0, imageDigest: "", sessionId: "", imageSha256: "", frameIndex: undefined, prefetch: false };
  let at = 0;
  while (at < message.length) {
    let key;
    [key, at] = varint(message, at);
    const field = Math.floor(key / 8);
    const wire = key % 8;
    if (wire === 0) {
      let value;
      [value, at] = varint(message, at);
      if (field === 4) out.frameIndex = value;
      if (field === 5) out.prefetch = value !== 0;
    } else if (wire === 2) {
      let size;
      [size, at] = varint(message, at);
      const chunk = message.subarray(at, at + size);
      at += size;
      if (field === 1) {
        out.image = size;
        out.imageDigest = createHash("sha256").update(chunk).digest("hex");
      }
      if (field === 2) out.sessionId = chunk.toString("utf8");
      if (field === 3) out.imageSha256 = chunk.toString("utf8");
    } else {
      throw new Error(`unexpected wire type ${wire} in a SetImage body`);
    }
  }
  return out;
}

/** Records every SetImage request `page` makes, parsed; returns the growing list. */
export function recordSetImages(page) {
  const calls = [];
  page.on("request", (request) => {
    if (!request.url().endsWith("/SetImage")) return;
    calls.push(parseSetImage(request.postDataBuffer() ?? Buffer.alloc(0)));
  });
  return calls;
}
