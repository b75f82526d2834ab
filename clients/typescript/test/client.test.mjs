// The built package against the real `mobilesam serve` (MOBILESAM_BIN, seeded weights from
// MOBILESAM_TEST_CHECKPOINT): sessions, every prompt shape, multimask, polygons, tracking,
// frame indices, prefetch, generate, supersede, errors with their gRPC codes, resume, the
// bearer token, and the same calls over gRPC-web (the browsers' transport, from Node).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, MobilesamError, Superseded, createClient, encodeRle } from "../dist/node.js";
import * as web from "../dist/web.js";
import { root, segmentCli, startServer, STARTUP_MS } from "./server.mjs";

const chelsea = join(root, "tests/fixtures/images/chelsea.png");
const chelseaBytes = new Uint8Array(readFileSync(chelsea));
const frame = (k) => new Uint8Array(readFileSync(join(root, `tests/fixtures/tracking/frame_${k}.png`)));
const TIMEOUT = 10 * STARTUP_MS;

let server;
let client;

before(async () => {
  server = await startServer();
  client = createClient(server.addr);
});

after(async () => {
  client?.close();
  await server?.stop();
});

/** Every ring of `polygons`, even-odd over pixel centres, as a row-major 0/1 bitmap. */
function rasterize(polygons, width, height) {
  const out = new Uint8Array(width * height);
  for (const { points } of polygons) {
    const n = points.length / 2;
    for (let y = 0; y < height; y++) {
      const cy = y + 0.5;
      for (let i = 0; i < n; i++) {
        const [ax, ay, bx, by] = [points[2 * i], points[2 * i + 1], points[(2 * i + 2) % points.length], points[(2 * i + 3) % points.length]];
        if ((ay <= cy) === (by <= cy)) continue;
        const x = ax + ((cy - ay) * (bx - ax)) / (by - ay);
        for (let px = 0; px < width; px++) if (px + 0.5 < x) out[y * width + px] ^= 1;
      }
    }
  }
  return out;
}

/** The mask's bitmap agrees with its own area, box and RLE. */
function checkMask(mask, width, height) {
  assert.equal(mask.width, width);
  assert.equal(mask.height, height);
  assert.equal(mask.bitmap.length, width * height);
  assert.equal(mask.bitmap.reduce((a, b) => a + b, 0), mask.area, "area counts the bitmap");
  assert.deepEqual(encodeRle(mask.bitmap, width, height), mask.rle, "the bitmap is the RLE");
  if (mask.area > 0) {
    let [x1, y1, x2, y2] = [width, height, 0, 0];
    mask.bitmap.forEach((v, i) => {
      if (!v) return;
      const x = i % width;
      const y = Math.floor(i / width);
      [x1, y1, x2, y2] = [Math.min(x1, x), Math.min(y1, y), Math.max(x2, x + 1), Math.max(y2, y + 1)];
    });
    assert.deepEqual(mask.bbox, [x1, y1, x2, y2], "bbox is the tight box as corners");
  }
}

test("modelInfo", { timeout: TIMEOUT }, async () => {
  const info = await client.modelInfo();
  assert.equal(info.name, "mobile_sam");
  assert.equal(info.imageSize, 1024);
  assert.ok(info.parameters > 0);
  assert.equal(typeof info.memoryTracking, "boolean");
});

test("openSession from bytes, a path and a Blob; resume by id", { timeout: TIMEOUT }, async () => {
  const session = await client.openSession(chelseaBytes);
  assert.equal(session.width, 451);
  assert.equal(session.height, 300);
  assert.ok(session.id.length > 0);
  assert.equal(session.imageSha256, createHash("sha256").update(chelseaBytes).digest("hex"));
  const fromPath = await client.openSession(chelsea);
  const fromBlob = await client.openSession(new Blob([chelseaBytes]));
  assert.equal(fromPath.imageSha256, session.imageSha256);
  assert.equal(fromBlob.source, "local_cache", "the same bytes reuse the embedding");
  // Resume from another client: no encode.
  const other = createClient(`http://${server.addr}`);
  const resumed = await other.openSession({ sessionId: session.id });
  assert.equal(resumed.id, session.id);
  assert.equal(resumed.encodeMs, 0);
  assert.equal(resumed.width, 451);
  const byDigest = await other.openSession({ imageSha256: session.imageSha256 });
  assert.equal(byDigest.encodeMs, 0);
  other.close();
  for (const s of [fromPath, fromBlob, byDigest]) await s.close();
  await session.close();
});

test("prompt shapes give the CLI's masks", { timeout: TIMEOUT }, async () => {
  const session = await client.openSession(chelseaBytes);
  const cases = [
    { prompt: { points: [200, 150] }, cli: ["--points", "[200, 150]"], objects: 1 },
    { prompt: { points: [[200, 150], [100, 80]], labels: [1, 1] }, cli: ["--points", "[[200, 150], [100, 80]]", "--labels", "[1, 1]"], objects: 2 },
    { prompt: { points: [[[200, 150], [100, 80]]], labels: [[1, 0]] }, cli: ["--points", "[[[200, 150], [100, 80]]]", "--labels", "[[1, 0]]"], objects: 1 },
    { prompt: { boxes: [100, 50, 300, 250] }, cli: ["--bboxes", "[100, 50, 300, 250]"], objects: 1 },
    { prompt: { boxes: [[100, 50, 300, 250], [10, 10, 60, 90]] }, cli: ["--bboxes", "[[100, 50, 300, 250], [10, 10, 60, 90]]"], objects: 2 },
    { prompt: { points: [[200, 150]], boxes: [[100, 50, 300, 250]] }, cli: ["--points", "[[200, 150]]", "--bboxes", "[[100, 50, 300, 250]]"], objects: 1 },
  ];
  for (const { prompt, cli, objects } of cases) {
    for (const multimask of [false, true]) {
      const result = await session.predict({ ...prompt, multimask });
      const reference = segmentCli(chelsea, [...cli, ...(multimask ? ["--multimask"] : [])]);
      assert.equal(result.objects.length, objects, JSON.stringify(prompt));
      result.objects.forEach((object, i) => {
        assert.equal(object.masks.length, multimask ? 3 : 1);
        assert.equal(object.state, "none");
        object.masks.forEach((mask, j) => {
          checkMask(mask, 451, 300);
          const expected = reference.objects[i].masks[j];
          assert.deepEqual(mask.rle, expected.rle, `${JSON.stringify(prompt)} object ${i} mask ${j} is the CLI's`);
          assert.equal(mask.area, expected.area);
          assert.ok(Math.abs(mask.score - expected.score) < 1e-4);
        });
        assert.equal(object.best, object.masks.reduce((b, m) => (m.score > b.score ? m : b)));
      });
    }
  }
  await session.close();
});

test("polygons outline the mask exactly", { timeout: TIMEOUT }, async () => {
  const session = await client.openSession(chelseaBytes);
  const { objects } = await session.predict({ points: [200, 150], polygons: true, lowResLogits: true });
  const [mask] = objects[0].masks;
  assert.ok(mask.polygons.length > 0);
  assert.equal(mask.polygons[0].hole, false);
  // Even-odd over pixel centres, the outlines cover the mask (IoU, as the page's test checks).
  const covered = rasterize(mask.polygons, 451, 300);
  let both = 0;
  let either = 0;
  covered.forEach((v, i) => {
    both += v & mask.bitmap[i];
    either += v | mask.bitmap[i];
  });
  assert.ok(both / either > 0.9, `outlines cover the mask: IoU ${both / either}`);
  assert.equal(mask.lowResLogits.length, 256 * 256 * 4);
  assert.equal(mask.lowResLogitsFloat32().length, 256 * 256);
  // The logits go back as a mask input.
  const refined = await session.predict({ points: [200, 150], maskInputs: [mask] });
  checkMask(refined.objects[0].masks[0], 451, 300);
  const plain = await session.predict({ points: [200, 150] });
  assert.deepEqual(plain.objects[0].masks[0].polygons, [], "no polygons unless asked");
  await session.close();
});

test("tracking follows objects onto the next frames; setImage frameIndex; untrack", { timeout: TIMEOUT }, async () => {
  const session = await client.openSession(frame(0), { frameIndex: 0 });
  assert.equal(session.width, 240);
  const prompted = await session.predict({
    points: [[[120, 80]]],
    boxes: [[30, 40, 110, 130]],
    track: true,
    objectIds: [7],
  });
  assert.equal(prompted.objects[0].objectId, 7);
  assert.equal(prompted.objects[0].state, "tracked");
  await session.predict({ boxes: [150, 20, 230, 90], track: true, objectIds: [9] });
  for (const k of [1, 2]) {
    const next = await session.setImage(frame(k), { frameIndex: k });
    assert.equal(next.frameIndex, k, "the answer names the frame index");
    assert.equal(session.frameIndex, k);
    assert.deepEqual(next.tracked.map((o) => o.objectId), [7, 9]);
    for (const object of next.tracked) {
      assert.ok(["tracked", "lost"].includes(object.state));
      if (object.state === "tracked") checkMask(object.masks[0], 240, 160);
    }
  }
  assert.deepEqual(await session.untrack([9]), [9]);
  const after = await session.setImage(frame(3), { frameIndex: 3 });
  assert.deepEqual(after.tracked.map((o) => o.objectId), [7]);
  assert.deepEqual(await session.untrack(), [7]);
  await assert.rejects(session.predict({ points: [1, 2], track: true }), /track needs objectIds/);
  await session.close();
});

test("prefetch caches frames; setImage by digest then costs no encode", { timeout: TIMEOUT }, async () => {
  const session = await client.openSession(frame(0), { frameIndex: 0 });
  const prefetched = await session.prefetch([frame(4), frame(5)]);
  assert.deepEqual(
    prefetched.map((p) => p.imageSha256),
    [frame(4), frame(5)].map((f) => createHash("sha256").update(f).digest("hex")),
  );
  assert.ok(prefetched.every((p) => p.prefetched));
  assert.equal(session.frameIndex, 0, "prefetch leaves the session's image alone");
  assert.equal(session.width, 240);
  const next = await session.setImage({ imageSha256: prefetched[1].imageSha256 }, { frameIndex: 5 });
  assert.equal(next.encodeMs, 0);
  assert.equal(next.frameIndex, 5);
  assert.equal(next.imageSha256, prefetched[1].imageSha256);
  const again = await session.setImage(frame(4), { frameIndex: 4 });
  assert.notEqual(again.source, "encoded", "prefetched bytes reuse the cached embedding");
  await session.close();
});

test("generate: masks as they come, then the summary", { timeout: TIMEOUT }, async () => {
  const session = await client.openSession(chelseaBytes);
  const generation = session.generate({ pointsPerSide: 4, predIouThresh: 0, stabilityScoreThresh: 0 });
  const masks = [];
  for await (const generated of generation) {
    checkMask(generated.mask, 451, 300);
    assert.equal(generated.point.label, 1);
    assert.deepEqual(generated.cropBox, [0, 0, 451, 300]);
    masks.push(generated);
  }
  assert.ok(masks.length > 0);
  assert.equal(generation.summary.maskCount, masks.length);
  assert.equal(generation.summary.width, 451);
  assert.equal(generation.summary.encodeMs, 0, "the session's embedding served it");
  // Without a session.
  const oneOff = client.generate(chelseaBytes, { pointsPerSide: 4, predIouThresh: 0, stabilityScoreThresh: 0 });
  assert.equal((await oneOff.all()).length, masks.length);
  assert.throws(() => session.generate({ pointsPerSide: -1 }), /pointsPerSide must be a non-negative integer/);
  await session.close();
});

test("errors carry their gRPC codes: NOT_FOUND, INVALID_ARGUMENT", { timeout: TIMEOUT }, async () => {
  await assert.rejects(client.openSession({ sessionId: "no-such-session" }), (e) => {
    assert.ok(e instanceof MobilesamError);
    assert.equal(e.code, Code.NotFound);
    assert.equal(e.codeName, "NOT_FOUND");
    return true;
  });
  const session = await client.openSession(chelseaBytes);
  await session.close();
  await assert.rejects(session.predict({ points: [1, 2] }), (e) => e instanceof MobilesamError && e.code === Code.NotFound);
  // A truncated image: every cut of the fixtures is refused INVALID_ARGUMENT.
  const truncation = JSON.parse(readFileSync(join(root, "tests/fixtures/truncation/truncation.json"), "utf8"));
  for (const image of truncation.images.slice(0, 4)) {
    const bytes = readFileSync(join(root, "tests/fixtures/truncation", image.file));
    const cut = image.cuts.find((c) => c.pillow_refuses) ?? image.cuts[0];
    await assert.rejects(client.openSession(new Uint8Array(bytes.subarray(0, cut.cut))), (e) => {
      assert.ok(e instanceof MobilesamError, String(e));
      assert.equal(e.code, Code.InvalidArgument, `${image.file} cut at ${cut.cut}: ${e.message}`);
      return true;
    });
  }
  // Server-side prompt checks (the client lets through what only the server knows).
  const open = await client.openSession(chelseaBytes);
  await assert.rejects(
    open.predict({ points: Array.from({ length: 200 }, (_, i) => [i, i]) }),
    (e) => e instanceof MobilesamError && e.code === Code.InvalidArgument,
  );
  await open.close();
});

test("supersede: queued prompts are answered Superseded, the newest is decoded", { timeout: TIMEOUT }, async () => {
  const slow = await startServer([], { MOBILESAM_TEST_DECODE_DELAY_MS: "300" });
  const slowClient = createClient(slow.addr);
  try {
    const session = await slowClient.openSession(chelseaBytes);
    // Each unary call is its own HTTP/2 stream: 20 ms between sends keeps them in order on
    // the server, while the first one's 300 ms decode keeps the others queued.
    const calls = [];
    for (let i = 0; i < 5; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 20));
      const call = session.predict({ points: [100 + 10 * i, 100], supersede: true });
      call.catch(() => undefined); // settled below; not an unhandled rejection meanwhile
      calls.push(call);
    }
    const settled = await Promise.allSettled(calls);
    const superseded = settled.filter((s) => s.status === "rejected");
    for (const s of superseded) {
      assert.ok(s.reason instanceof Superseded, String(s.reason));
      assert.equal(s.reason.code, Code.Aborted);
    }
    assert.ok(superseded.length >= 1, "queued prompts were superseded");
    assert.equal(settled.at(-1).status, "fulfilled", "the newest prompt is decoded");
  } finally {
    slowClient.close();
    await slow.stop();
  }
});

test("bearer token: refused without it (UNAUTHENTICATED), served with it, over both transports", { timeout: TIMEOUT }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "mobilesam-client-"));
  const tokenFile = join(dir, "token");
  writeFileSync(tokenFile, "s3cret-token\n");
  const guarded = await startServer(["--auth-token-file", tokenFile]);
  try {
    for (const make of [createClient, web.createClient]) {
      const anonymous = make(`http://${guarded.addr}`, { retries: 0 });
      await assert.rejects(anonymous.modelInfo(), (e) => e instanceof MobilesamError && e.code === Code.Unauthenticated);
      anonymous.close();
      const authorised = make(`http://${guarded.addr}`, { token: "s3cret-token" });
      const session = await authorised.openSession(chelseaBytes);
      assert.equal((await session.predict({ points: [200, 150] })).objects.length, 1);
      await session.close();
      authorised.close();
    }
  } finally {
    await guarded.stop();
  }
});

test("gRPC-web: the browsers' transport gives the same answers", { timeout: TIMEOUT }, async () => {
  for (const grpcWeb of [web.createClient(`http://${server.addr}`), createClient(server.addr, { transport: "grpc-web" })]) {
    assert.equal((await grpcWeb.modelInfo()).name, "mobile_sam");
    const session = await grpcWeb.openSession(new Blob([chelseaBytes]));
    const viaWeb = await session.predict({ points: [[[200, 150], [100, 80]]], labels: [[1, 0]], multimask: true, polygons: true });
    const grpcSession = await client.openSession({ sessionId: session.id });
    const viaGrpc = await grpcSession.predict({ points: [[[200, 150], [100, 80]]], labels: [[1, 0]], multimask: true, polygons: true });
    assert.deepEqual(
      viaWeb.objects[0].masks.map((m) => [m.rle, m.polygons]),
      viaGrpc.objects[0].masks.map((m) => [m.rle, m.polygons]),
    );
    const generated = await session.generate({ pointsPerSide: 2, predIouThresh: 0, stabilityScoreThresh: 0 }).all();
    assert.ok(generated.length > 0, "server streaming over gRPC-web");
    await assert.rejects(grpcWeb.openSession({ sessionId: "gone-session" }), (e) => e.code === Code.NotFound);
    await session.close();
    grpcWeb.close();
  }
});
