// Unit tests of the built package that need no server: RLE on hand-made masks, the prompt
// nesting and its errors, the masks' accessors.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ArgumentError,
  Code,
  Mask,
  MobilesamError,
  baseUrlOf,
  createClient,
  decodeCounts,
  decodeRle,
  encodeCounts,
  encodeRle,
  parsePrompt,
} from "../dist/node.js";

/** A mask drawn as text rows ('#' foreground) -> row-major bitmap. */
function draw(rows) {
  const height = rows.length;
  const width = rows[0].length;
  const bitmap = new Uint8Array(width * height);
  rows.forEach((row, y) => [...row].forEach((c, x) => (bitmap[y * width + x] = c === "#" ? 1 : 0)));
  return { bitmap, width, height };
}

test("RLE: a hand-made 4x3 mask decodes from pycocotools' string", () => {
  const { bitmap, width, height } = draw([".##.", ".#..", "##.."]);
  // Column-major: 0 0 1 | 1 1 1 | 1 0 0 | 0 0 0 -> runs 2, 5, 5 -> "255".
  const rle = { size: [height, width], counts: "255" };
  assert.deepEqual(decodeCounts("255"), [2, 5, 5]);
  assert.deepEqual(decodeRle(rle), bitmap);
  assert.deepEqual(encodeRle(bitmap, width, height), rle);
});

test("RLE: multi-character and negative-delta counts", () => {
  // 19 wide, 10 high: columns 0-9 and 15-18 foreground. Runs 0, 100, 50, 40; the fourth is
  // stored as 40 - 100 = -60 ("TN"), 100 as "T3", 50 as "b1".
  const rows = Array.from({ length: 10 }, () => "##########.....####");
  const { bitmap, width, height } = draw(rows);
  assert.equal(encodeCounts([0, 100, 50, 40]), "0T3b1TN");
  assert.deepEqual(decodeCounts("0T3b1TN"), [0, 100, 50, 40]);
  assert.deepEqual(decodeRle({ size: [height, width], counts: "0T3b1TN" }), bitmap);
  assert.deepEqual(encodeRle(bitmap, width, height).counts, "0T3b1TN");
});

test("RLE: random masks round-trip; empty and full masks", () => {
  let seed = 7;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let n = 0; n < 50; n++) {
    const width = 1 + Math.floor(random() * 40);
    const height = 1 + Math.floor(random() * 40);
    const density = random();
    const bitmap = Uint8Array.from({ length: width * height }, () => (random() < density ? 1 : 0));
    assert.deepEqual(decodeRle(encodeRle(bitmap, width, height)), bitmap);
  }
  assert.deepEqual(decodeRle({ size: [2, 3], counts: "6" }), new Uint8Array(6));
  assert.deepEqual(decodeRle({ size: [2, 3], counts: "06" }), new Uint8Array(6).fill(1));
});

test("RLE: corrupt counts are refused", () => {
  assert.throws(() => decodeRle({ size: [2, 2], counts: "5" }), /exceed/);
  assert.throws(() => decodeRle({ size: [2, 2], counts: "1" }), /cover 1 of 4/);
  assert.throws(() => decodeCounts("`"), /truncated/);
});

test("Mask: bitmap, at, xywh, toImageData", () => {
  const { bitmap } = draw([".##.", ".#..", "##.."]);
  const mask = new Mask({ score: 0.9, area: 5, bbox: [0, 0, 3, 3], rle: { size: [3, 4], counts: "255" } });
  assert.equal(mask.width, 4);
  assert.equal(mask.height, 3);
  assert.deepEqual(mask.bitmap, bitmap);
  assert.equal(mask.at(1, 0), true);
  assert.equal(mask.at(3, 0), false);
  assert.equal(mask.at(9, 9), false);
  assert.deepEqual(mask.xywh, [0, 0, 3, 3]);
  assert.throws(() => mask.toImageData(), /needs ImageData/);
  class FakeImageData {
    constructor(data, width, height) {
      Object.assign(this, { data, width, height });
    }
  }
  const image = mask.toImageData({ color: [10, 20, 30, 40] }, FakeImageData);
  assert.equal(image.width, 4);
  assert.equal(image.height, 3);
  assert.deepEqual([...image.data.slice(0, 8)], [0, 0, 0, 0, 10, 20, 30, 40]);
  const alpha = [...image.data].filter((_, i) => i % 4 === 3).map((a) => (a > 0 ? 1 : 0));
  assert.deepEqual(alpha, [...bitmap]);
});

test("prompts nest as the CLI's --points/--labels/--bboxes", () => {
  const pt = (x, y, label = 1) => ({ x, y, label });
  assert.deepEqual(parsePrompt([10, 20]), [{ points: [pt(10, 20)] }]);
  assert.deepEqual(parsePrompt([10, 20], 0), [{ points: [pt(10, 20, 0)] }]);
  assert.deepEqual(parsePrompt([10, 20], [0]), [{ points: [pt(10, 20, 0)] }]);
  assert.deepEqual(parsePrompt([[1, 2], [3, 4]], [1, 0]), [{ points: [pt(1, 2)] }, { points: [pt(3, 4, 0)] }]);
  assert.deepEqual(parsePrompt([[[1, 2], [3, 4]], [[5, 6]]], [[1, 0], [1]]), [
    { points: [pt(1, 2), pt(3, 4, 0)] },
    { points: [pt(5, 6)] },
  ]);
  assert.deepEqual(parsePrompt(undefined, undefined, [1, 2, 3, 4]), [
    { points: [], box: { x1: 1, y1: 2, x2: 3, y2: 4 } },
  ]);
  assert.deepEqual(parsePrompt([[5, 6]], undefined, [[1, 2, 30, 40]]), [
    { points: [pt(5, 6)], box: { x1: 1, y1: 2, x2: 30, y2: 40 } },
  ]);
});

test("bad prompts are refused before sending, naming the argument", () => {
  const refuses = (args, pattern) =>
    assert.throws(
      () => parsePrompt(...args),
      (e) => e instanceof ArgumentError && e instanceof MobilesamError && e.code === Code.InvalidArgument && pattern.test(e.message),
    );
  refuses([], /no prompt/);
  refuses([[]], /points is empty/);
  refuses([[1, 2, 3]], /points: expected \[x, y\], found a list of 3 values/);
  refuses([[[1, "a"]]], /points\[0\]\[1\]: expected a number, found string "a"/);
  refuses([[1, NaN]], /points\[1\]: expected a finite number/);
  refuses([[[[[1, 2]]]]], /nests 4 lists deep/);
  refuses([[1, 2], [1, 0]], /one label like \[1\], found 2/);
  refuses([[1, 2], 2], /labels\[0\]: expected a label 1/);
  refuses([[[1, 2], [3, 4]], [1]], /flat list of 2 labels/);
  refuses([[[[1, 2], [3, 4]]], [[1]]], /labels\[0\] has 1 labels for 2 points/);
  refuses([undefined, [1]], /labels needs points/);
  refuses([undefined, undefined, [3, 2, 1, 4]], /x2 > x1/);
  refuses([undefined, undefined, [1, 2, 3]], /boxes: expected \[x1, y1, x2, y2\]/);
  refuses([[[1, 2], [3, 4]], undefined, [0, 0, 5, 5]], /2 object\(s\) but boxes gives 1/);
});

test("client arguments are checked", async () => {
  assert.equal(baseUrlOf("localhost:50051"), "http://localhost:50051");
  assert.equal(baseUrlOf("https://example.org:443/"), "https://example.org");
  assert.throws(() => createClient("ftp://x"), ArgumentError);
  assert.throws(() => createClient("localhost:1", { token: "two words" }), /token/);
  assert.throws(() => createClient("localhost:1", { transport: "smoke" }), /transport/);
  const client = createClient("localhost:1");
  await assert.rejects(client.openSession(new Uint8Array(0)), /image is empty/);
  await assert.rejects(client.openSession({ sessionId: "bad id" }), /sessionId must be/);
  await assert.rejects(client.openSession({ imageSha256: "abc" }), /64 lowercase hex/);
  await assert.rejects(client.openSession(42), /needs an image/);
  await assert.rejects(client.openSession("/no/such/file.png"), /cannot read the image/);
  client.close();
});

test("UNAVAILABLE is retried with backoff, then reported", async () => {
  const client = createClient("127.0.0.1:9", { retries: 3, retryDelayMs: 20 });
  const started = Date.now();
  await assert.rejects(client.modelInfo(), (e) => e instanceof MobilesamError && e.code === Code.Unavailable);
  assert.ok(Date.now() - started >= 20 + 40 + 80, "three retries waited 20, 40 and 80 ms");
  client.close();
});
