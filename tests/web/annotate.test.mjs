// The annotation page in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core) against the real `mobilesam serve` on a loopback port.
//
// Needs MOBILESAM_BIN (the built binary) and MOBILESAM_TEST_CHECKPOINT (seeded weights from
// `mobilesam seeded-checkpoint`). The masks the page draws are checked pixel by pixel
// against `mobilesam segment` for the same clicks; artefacts (screenshot, exports) go to
// target/web-artifacts/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  artifacts,
  bin,
  checkpoint,
  clickClip,
  decodeRle,
  download,
  fixture,
  idle,
  launchBrowser,
  mismatches,
  overlayMask,
  recordClip,
  sam2Checkpoint,
  startServer,
  TIMEOUT,
} from "./support.mjs";

const WIDTH = 451;
const HEIGHT = 300;

let server;
let baseUrl;
let browser;

/** `mobilesam segment --multimask` for the page's clicks: the best-scoring mask, as the
 * page picks it by default. */
function segmentCli(points, weights = checkpoint) {
  const out = execFileSync(bin, [
    "segment",
    "--checkpoint", weights,
    "--image", fixture,
    // One object: points nested three deep, labels two deep.
    "--points", JSON.stringify([points.map((p) => [Math.fround(p.x), Math.fround(p.y)])]),
    "--labels", JSON.stringify([points.map((p) => p.label)]),
    "--multimask",
  ], { env: { ...process.env, RUST_LOG: "error" } });
  const masks = JSON.parse(out.toString()).objects[0].masks;
  return masks.reduce((best, m) => (m.score > best.score ? m : best));
}

/** `[x0, y0, x1, y1, ...]` -> `[[x0, y0], [x1, y1], ...]`. */
function pairs(flat) {
  const out = [];
  for (let i = 0; i + 1 < flat.length; i += 2) out.push([flat[i], flat[i + 1]]);
  return out;
}

/** Every ring of `polygons` together, even-odd over pixel centres, as 0/1 per pixel (an
 * independent rasteriser). */
function rasterizeEvenOdd(polygons, width, height) {
  const out = new Uint8Array(width * height);
  for (const polygon of polygons) {
    const ring = pairs(polygon.points);
    for (let y = 0; y < height; y++) {
      const cy = y + 0.5;
      for (let i = 0; i < ring.length; i++) {
        const [ax, ay] = ring[i];
        const [bx, by] = ring[(i + 1) % ring.length];
        if (ay <= cy === by <= cy) continue;
        const crossing = ax + ((cy - ay) / (by - ay)) * (bx - ax);
        // Flip every pixel whose centre lies right of the crossing.
        for (let x = Math.max(0, Math.ceil(crossing - 0.5)); x < width; x++) out[y * width + x] ^= 1;
      }
    }
  }
  return out;
}

/** Clicks at image pixel (x, y) and waits for the prediction that follows. */
async function clickImage(page, x, y, button) {
  const before = Number(await page.getAttribute("body", "data-predictions"));
  const box = await page.locator("#prompt-canvas").boundingBox();
  await page.mouse.click(box.x + (x * box.width) / WIDTH, box.y + (y * box.height) / HEIGHT, { button });
  await page.waitForFunction(
    (n) => Number(document.body.dataset.predictions) > n && document.body.dataset.busy === "0",
    before,
    { timeout: TIMEOUT },
  );
}

async function expectOverlayMatchesCli(page) {
  const [object] = await page.evaluate(() => window.mobilesam.objects());
  const reference = segmentCli(object.points);
  const expected = decodeRle(reference.rle.size, reference.rle.counts);
  assert.deepEqual(object.rle?.counts.slice(0, 40), reference.rle.counts.slice(0, 40), `page and CLI masks differ for ${JSON.stringify(object.points)}`);
  assert.deepEqual(object.rle, reference.rle, "the page got the CLI mask for its clicks");
  const drawn = await overlayMask(page);
  const area = expected.reduce((s, v) => s + v, 0);
  assert.ok(area > 0 && area < WIDTH * HEIGHT, `a partial reference mask (area ${area})`);
  assert.equal(drawn.length, expected.length);
  assert.equal(mismatches(drawn, expected), 0, "overlay pixels differ from the server's mask");
  return { reference, drawn };
}

before(async () => {
  mkdirSync(artifacts, { recursive: true });
  server = await startServer();
  baseUrl = `http://${server.addr}`;
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  server?.child.kill("SIGTERM");
});

/** Waits until the page's model line has GetModelInfo's answer (or its error). */
async function modelLine(page) {
  await page.waitForFunction(() => ["ready", "error"].includes(document.getElementById("model").dataset.state), null, {
    timeout: TIMEOUT,
  });
  return page.evaluate(() => {
    const element = document.getElementById("model");
    return { state: element.dataset.state, family: element.dataset.family, text: element.textContent, error: element.classList.contains("error") };
  });
}

test("the page shows the served model: MobileSAM", { timeout: TIMEOUT }, async () => {
  const page = await browser.newPage({ viewport: { width: 1000, height: 700 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(baseUrl + "/");
  assert.deepEqual(await modelLine(page), {
    state: "ready", family: "mobile_sam", text: "model: MobileSAM (mobile_sam)", error: false,
  });
  assert.equal(await page.getAttribute("[data-testid=model]", "data-memory-tracking"), "false");
  assert.match(await page.getAttribute("#model", "title"), /family: mobile_sam/);
  assert.deepEqual(errors, [], "no page errors");
  await page.close();
});

test("the page shows the served model: SAM 2.1, and segments with it", { timeout: 10 * TIMEOUT }, async () => {
  const sam2 = await startServer([], {}, { checkpoint: sam2Checkpoint });
  try {
    const page = await browser.newPage({ viewport: { width: 1000, height: 700 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(`http://${sam2.addr}/`);
    assert.deepEqual(await modelLine(page), {
      state: "ready", family: "sam2.1_hiera", text: "model: SAM 2.1 Hiera (sam2.1_hiera)", error: false,
    });
    assert.equal(await page.getAttribute("#model", "data-memory-tracking"), "true");
    // A click gives the mask `mobilesam segment` gives with the same checkpoint.
    await page.setInputFiles("#file", fixture);
    await page.waitForFunction(() => document.body.dataset.sessionId && document.body.dataset.busy === "0", null, {
      timeout: TIMEOUT,
    });
    await clickImage(page, 200, 150, "left");
    const [object] = await page.evaluate(() => window.mobilesam.objects());
    assert.deepEqual(object.rle, segmentCli(object.points, sam2Checkpoint).rle, "the page got the CLI's SAM 2.1 mask");
    await page.screenshot({ path: join(artifacts, "sam2.png"), fullPage: true });
    assert.deepEqual(errors, [], "no page errors");
    await page.close();
  } finally {
    sam2.child.kill("SIGTERM");
  }
});

test("annotate an image: clicks, refine, candidates, undo, export", { timeout: 10 * TIMEOUT }, async () => {
  const page = await browser.newPage({ viewport: { width: 1000, height: 700 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(baseUrl + "/");
  await page.setInputFiles("#file", fixture);
  await page.waitForFunction(() => document.body.dataset.sessionId && document.body.dataset.busy === "0", null, {
    timeout: TIMEOUT,
  });
  assert.match(await page.textContent("#lat-encode"), /ms$/);

  // Left click: a foreground point; the overlay is the server's best mask.
  await clickImage(page, 200, 150, "left");
  const first = await expectOverlayMatchesCli(page);
  assert.equal(await page.locator("#candidates .candidate").count(), 3, "three multimask candidates");
  assert.match(await page.textContent("#lat-decode"), /ms$/);
  assert.match(await page.textContent("#lat-round-trip"), /ms$/);

  // Right click: a background point refines the same object.
  await clickImage(page, 60, 60, "right");
  const [object] = await page.evaluate(() => window.mobilesam.objects());
  assert.deepEqual(object.points.map((p) => p.label), [1, 0]);
  const refined = await expectOverlayMatchesCli(page);
  assert.notEqual(refined.reference.rle.counts, first.reference.rle.counts, "the refinement changed the mask");

  // The server's outlines of the chosen mask (every region, then its holes) cover the
  // reference mask: even-odd over pixel centres.
  const [viewed] = await page.evaluate(() => window.mobilesam.objects());
  const polygons = viewed.polygons;
  assert.ok(polygons.length > 0 && !polygons[0].hole, "the server sent the mask's outlines");
  const reference = decodeRle(refined.reference.rle.size, refined.reference.rle.counts);
  const covered = rasterizeEvenOdd(polygons, WIDTH, HEIGHT);
  let both = 0;
  let either = 0;
  for (let i = 0; i < covered.length; i++) {
    both += covered[i] & reference[i];
    either += covered[i] | reference[i];
  }
  assert.ok(both / either > 0.9, `outlines cover the mask: IoU ${both / either}`);

  // Export COCO JSON: the server's outlines as polygons (its RLE when the mask has holes),
  // its area and bbox.
  const coco = JSON.parse(await download(page, "#export-coco", "chelsea.coco.json"));
  assert.deepEqual(coco.images[0], { id: 1, file_name: "chelsea.png", width: WIDTH, height: HEIGHT });
  assert.equal(coco.annotations.length, 1);
  const segmentation = polygons.some((p) => p.hole)
    ? refined.reference.rle
    : polygons.map((p) => p.points);
  assert.deepEqual(coco.annotations[0].segmentation, segmentation);
  assert.equal(coco.annotations[0].area, refined.reference.area);
  assert.deepEqual(coco.annotations[0].bbox, refined.reference.bbox);
  assert.deepEqual(coco.categories, [{ id: 1, name: "object" }]);

  // Export YOLO segmentation labels: one line, the server's region outlines (joined when
  // there are several), pixel corners over width and height.
  const yolo = (await download(page, "#export-yolo", "chelsea.txt")).trim().split("\n");
  assert.equal(yolo.length, 1);
  const [cls, ...coords] = yolo[0].split(" ");
  assert.equal(cls, "0");
  const regions = polygons.filter((p) => !p.hole);
  const vertices = new Set(regions.flatMap((p) => pairs(p.points).map(([x, y]) => `${x},${y}`)));
  const written = pairs(coords.map(Number)).map(([x, y]) => `${Math.round(x * WIDTH)},${Math.round(y * HEIGHT)}`);
  assert.deepEqual(new Set(written), vertices, "the YOLO line holds exactly the outline vertices");
  if (regions.length === 1) {
    const expected = pairs(regions[0].points).flatMap(([x, y]) => [(x / WIDTH).toFixed(6), (y / HEIGHT).toFixed(6)]);
    assert.deepEqual(coords, expected);
  }

  // Another candidate can be picked; undo brings the pick back.
  const candidates = page.locator("#candidates .candidate");
  const chosenBefore = await page.evaluate(() => window.mobilesam.objects()[0].chosen);
  const other = chosenBefore === 0 ? 1 : 0;
  await candidates.nth(other).click();
  assert.equal(await page.evaluate(() => window.mobilesam.objects()[0].chosen), other);
  await page.click("#undo");
  assert.equal(await page.evaluate(() => window.mobilesam.objects()[0].chosen), chosenBefore);
  assert.equal(mismatches(await overlayMask(page), refined.drawn), 0);

  // Undo the right click: the first mask is back.
  await page.click("#undo");
  assert.equal(mismatches(await overlayMask(page), first.drawn), 0, "undo restores the first mask");

  // A second object gets its own colour.
  await page.click("#new-object");
  await clickImage(page, 380, 250, "left");
  const colours = await page.evaluate(() => {
    const canvas = document.getElementById("overlay-canvas");
    const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    const seen = new Set();
    for (let i = 0; i < data.length; i += 4) if (data[i + 3] > 0) seen.add(`${data[i]},${data[i + 1]},${data[i + 2]}`);
    return [...seen];
  });
  assert.ok(colours.length >= 2, `two object colours drawn: ${colours}`);
  assert.equal(await page.locator("#objects li").count(), 2);

  // A drag draws a box: a third object segmented from its box alone.
  await page.click("#new-object");
  const stage = await page.locator("#prompt-canvas").boundingBox();
  const at = (x, y) => [stage.x + (x * stage.width) / WIDTH, stage.y + (y * stage.height) / HEIGHT];
  const before = Number(await page.getAttribute("body", "data-predictions"));
  await page.mouse.move(...at(100, 80));
  await page.mouse.down();
  await page.mouse.move(...at(200, 150), { steps: 5 });
  await page.mouse.move(...at(300, 220), { steps: 5 });
  await page.mouse.up();
  await page.waitForFunction(
    (n) => Number(document.body.dataset.predictions) > n && document.body.dataset.busy === "0",
    before,
    { timeout: TIMEOUT },
  );
  const boxed = (await page.evaluate(() => window.mobilesam.objects()))[2];
  assert.equal(boxed.points.length, 0);
  assert.ok(boxed.box, "the drag became a box");
  const [x1, y1, x2, y2] = boxed.box;
  assert.ok(Math.abs(x1 - 100) < 1 && Math.abs(y1 - 80) < 1 && Math.abs(x2 - 300) < 1 && Math.abs(y2 - 220) < 1, `box ${boxed.box}`);
  const out = execFileSync(bin, [
    "segment", "--checkpoint", checkpoint, "--image", fixture, "--multimask",
    "--bboxes", JSON.stringify(boxed.box.map(Math.fround)),
  ], { env: { ...process.env, RUST_LOG: "error" } });
  const best = JSON.parse(out.toString()).objects[0].masks.reduce((b, m) => (m.score > b.score ? m : b));
  assert.deepEqual(boxed.rle, best.rle, "the box's mask is the CLI's for the same box");
  assert.equal(await page.locator("#objects li").count(), 3);

  await page.screenshot({ path: join(artifacts, "annotate.png"), fullPage: true });
  assert.deepEqual(errors, [], "no page errors");
  assert.doesNotMatch(await page.textContent("#status"), /invalid|notfound|unavailable|unauthenticated/i);
});

/** Opens the recorded clip in a fresh page; counts the frames sent as JPEG and as PNG. */
async function openClip(url) {
  const page = await browser.newPage({ viewport: { width: 1000, height: 700 } });
  const errors = [];
  const sent = { jpeg: 0, png: 0 };
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("request", (request) => {
    if (!request.url().endsWith("/SetImage")) return;
    const body = request.postDataBuffer() ?? Buffer.alloc(0);
    if (body.includes(Buffer.from([0xff, 0xd8, 0xff]))) sent.jpeg++;
    if (body.includes(Buffer.from([0x89, 0x50, 0x4e, 0x47]))) sent.png++;
  });
  await page.goto(url);
  const clip = await recordClip(page);
  assert.ok(clip.length > 1000, `a recorded clip (${clip.length} bytes)`);
  await page.setInputFiles("#file", { name: "clip.webm", mimeType: "video/webm", buffer: clip });
  await idle(page);
  assert.equal(await page.isVisible("#video-controls"), true);
  assert.match(await page.textContent("#frame-label"), /^frame 1 \//);
  return { page, errors, sent };
}

test("track a video: two objects over every frame, a correction, per-frame exports", { timeout: 20 * TIMEOUT }, async () => {
  const { page, errors, sent } = await openClip(baseUrl + "/");
  const session = await page.getAttribute("body", "data-session-id");
  await clickClip(page, 90, 120);
  await page.click("#new-object");
  await clickClip(page, 230, 100);
  const start = await page.evaluate(() => window.mobilesam.objects());
  assert.deepEqual(start.map((o) => [o.id, o.state]), [[1, "tracked"], [2, "tracked"]]);

  // Track: the server follows both objects onto every later frame.
  await page.click("#track");
  await idle(page);
  const frameCount = Number((await page.textContent("#frame-label")).match(/\/ (\d+)/)[1]);
  assert.ok(frameCount >= 6, `a clip of ${frameCount} frames`);
  assert.equal(await page.evaluate(() => window.mobilesam.frameIndex()), frameCount - 1, "tracked to the last frame");
  assert.equal(await page.getAttribute("body", "data-session-id"), session, "one session for the whole clip");
  const frames = await page.evaluate(() => window.mobilesam.frames());
  assert.deepEqual(frames.map((f) => f.index), [...Array(frameCount).keys()]);
  for (const frame of frames) {
    assert.deepEqual(frame.objects.map((o) => [o.id, o.state]), [[1, "tracked"], [2, "tracked"]], `frame ${frame.index}`);
    for (const o of frame.objects) {
      assert.deepEqual(o.rle.size, [240, 320]);
      assert.ok(o.polygons.length > 0 && !o.polygons[0].hole, `frame ${frame.index}: the server sent the tracked mask's outlines`);
    }
  }
  assert.notDeepEqual(frames[1].objects[0].rle, frames[0].objects[0].rle, "the masks change with the frames");

  // The overlay shows the last frame's two masks.
  const objects = await page.evaluate(() => window.mobilesam.objects());
  const union = new Uint8Array(320 * 240);
  for (const o of objects) decodeRle(o.rle.size, o.rle.counts).forEach((v, i) => (union[i] |= v));
  assert.equal(mismatches(await overlayMask(page), union), 0, "the overlay shows the tracked masks");

  // A click on this frame corrects object 2 (the active one); its record follows.
  await clickClip(page, 200, 60);
  const corrected = await page.evaluate(() => window.mobilesam.objects()[1]);
  assert.notDeepEqual(corrected.rle, objects[1].rle, "the correction changed the mask");
  const last = (await page.evaluate(() => window.mobilesam.frames())).at(-1);
  assert.deepEqual(last.objects[1].rle, corrected.rle);

  // Exports: COCO with one image per frame, YOLO labels per frame.
  const coco = JSON.parse(await download(page, "#export-coco", "clip.coco.json"));
  assert.deepEqual(coco.videos, [{ id: 1, name: "clip.webm" }]);
  assert.equal(coco.images.length, frameCount);
  coco.images.forEach((image, k) => {
    assert.deepEqual(image, {
      id: k + 1, file_name: `clip_frame${String(k).padStart(5, "0")}.jpg`, width: 320, height: 240, video_id: 1, frame_index: k,
    });
  });
  assert.equal(coco.annotations.length, 2 * frameCount);
  assert.deepEqual(coco.annotations.filter((a) => a.image_id === frameCount).map((a) => a.object_id), [1, 2]);
  // Every segmentation is the server's outlines of that frame's mask (its RLE with holes).
  const recorded = (await page.evaluate(() => window.mobilesam.frames())).flatMap((f) => f.objects);
  assert.deepEqual(
    coco.annotations.map((a) => a.segmentation),
    recorded.map((o) => (o.polygons.some((p) => p.hole) ? { size: o.rle.size, counts: o.rle.counts } : o.polygons.map((p) => p.points))),
  );
  assert.deepEqual(recorded.at(-1).polygons, corrected.polygons, "the correction's outlines are the last frame's");
  const labels = [];
  page.on("download", (file) => labels.push(file));
  await page.click("#export-yolo");
  for (let i = 0; i < 100 && labels.length < frameCount; i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal(labels.length, frameCount, "one YOLO label file per frame");
  const names = labels.map((file) => file.suggestedFilename()).sort();
  assert.deepEqual(names, [...Array(frameCount).keys()].map((k) => `clip_frame${String(k).padStart(5, "0")}.txt`));
  const lastLabels = readFileSync(await labels.find((f) => f.suggestedFilename() === names.at(-1)).path(), "utf8");
  assert.equal(lastLabels.trim().split("\n").length, 2, "two objects labelled on the last frame");
  for (const line of lastLabels.trim().split("\n")) {
    const [cls, ...coords] = line.split(" ").map(Number);
    assert.equal(cls, 0);
    assert.ok(coords.length >= 6 && coords.every((c) => c >= 0 && c <= 1), "normalised polygon from the server's outlines");
  }

  assert.equal(sent.png, 0, "no frame was sent as PNG");
  assert.ok(sent.jpeg >= frameCount, `every frame sent as JPEG (${sent.jpeg})`);
  await page.screenshot({ path: join(artifacts, "video.png"), fullPage: true });
  assert.deepEqual(errors, [], "no page errors");
});

test("track pauses where an object is lost; a click corrects it and tracking goes on", { timeout: 20 * TIMEOUT }, async () => {
  // Every followed mask of the seeded weights scores below 1: lost on every next frame.
  const strict = await startServer(["--track-min-score", "1"]);
  try {
    const { page, errors } = await openClip(`http://${strict.addr}/`);
    await clickClip(page, 160, 120);
    await page.click("#track");
    await idle(page);
    assert.equal(await page.evaluate(() => window.mobilesam.frameIndex()), 1, "paused on the second frame");
    assert.match(await page.textContent("#status"), /object 1 lost/);
    assert.equal((await page.evaluate(() => window.mobilesam.objects()))[0].state, "lost");
    assert.equal(mismatches(await overlayMask(page), new Uint8Array(320 * 240)), 0, "a lost object draws no mask");
    await clickClip(page, 150, 110);
    assert.equal((await page.evaluate(() => window.mobilesam.objects()))[0].state, "tracked", "the click corrected it");
    await page.click("#track");
    await idle(page);
    assert.equal(await page.evaluate(() => window.mobilesam.frameIndex()), 2, "tracking went on to the next frame");
    assert.deepEqual(errors, [], "no page errors");
  } finally {
    strict.child.kill("SIGTERM");
  }
});

test("a server with a bearer token: the page sends the token from #token=", { timeout: 10 * TIMEOUT }, async () => {
  const tokenFile = join(artifacts, "token.txt");
  writeFileSync(tokenFile, "page-s3cret\n");
  const guarded = await startServer(["--auth-token-file", tokenFile]);
  try {
    const page = await browser.newPage({ viewport: { width: 1000, height: 700 } });
    // Without the token: the page loads, its calls are refused with UNAUTHENTICATED.
    await page.goto(`http://${guarded.addr}/`);
    await page.setInputFiles("#file", fixture);
    await page.waitForFunction(() => document.getElementById("status").classList.contains("error"), null, {
      timeout: TIMEOUT,
    });
    assert.match(await page.textContent("#status"), /unauthenticated/i);
    // GetModelInfo was refused too: the model line shows the error.
    const refused = await modelLine(page);
    assert.equal(refused.state, "error");
    assert.equal(refused.error, true);
    assert.match(refused.text, /^model: unavailable \(.*unauthenticated/i);
    // With it: the session opens (a fresh page: a fragment change does not reload).
    const withToken = await browser.newPage({ viewport: { width: 1000, height: 700 } });
    await withToken.goto(`http://${guarded.addr}/#token=page-s3cret`);
    await withToken.setInputFiles("#file", fixture);
    await withToken.waitForFunction(() => document.body.dataset.sessionId && document.body.dataset.busy === "0", null, {
      timeout: TIMEOUT,
    });
    assert.match(await withToken.textContent("#status"), /^ready/);
    assert.equal((await modelLine(withToken)).family, "mobile_sam");
  } finally {
    guarded.child.kill("SIGTERM");
  }
});

test("live preview: the mask follows the pointer (latest wins), a click commits it", { timeout: 10 * TIMEOUT }, async () => {
  // A slow decoder (debug builds only): hovers queue up on the server, so the newer ones
  // supersede the older ones there.
  const slow = await startServer([], { MOBILESAM_TEST_DECODE_DELAY_MS: "300" });
  try {
    const page = await browser.newPage({ viewport: { width: 1000, height: 700 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(`http://${slow.addr}/`);
    await page.setInputFiles("#file", fixture);
    await page.waitForFunction(() => document.body.dataset.sessionId && document.body.dataset.busy === "0", null, {
      timeout: TIMEOUT,
    });
    const box = await page.locator("#prompt-canvas").boundingBox();
    const at = (x, y) => [box.x + (x * box.width) / WIDTH, box.y + (y * box.height) / HEIGHT];

    // Sweep the pointer across the image: many hovers, and the last one wins.
    await page.mouse.move(...at(40, 40));
    await page.mouse.move(...at(200, 150), { steps: 12 });
    await page.waitForFunction(
      () => {
        const p = window.mobilesam.preview();
        return p.sent > 1 && p.shownRequest === p.sent;
      },
      null,
      { timeout: TIMEOUT },
    );
    const shown = await page.evaluate(() => window.mobilesam.preview());
    assert.ok(shown.superseded > 0, `hovers queued on the server were superseded: ${JSON.stringify(shown)}`);
    assert.ok(shown.shown < shown.sent, "stale hovers were not drawn");
    assert.deepEqual(await page.evaluate(() => window.mobilesam.objects()), [], "a hover creates no object");
    // The preview is the server's mask for a click at the pointer.
    const reference = segmentCli([shown.point]);
    assert.deepEqual(shown.rle, reference.rle, "the preview is the CLI mask for the hovered point");
    const expected = decodeRle(reference.rle.size, reference.rle.counts);
    assert.equal(mismatches(await overlayMask(page), expected), 0, "the overlay shows the preview");

    // A click where the pointer is commits that mask as the object's.
    const before = Number(await page.getAttribute("body", "data-predictions"));
    await page.mouse.down();
    await page.mouse.up();
    await page.waitForFunction(
      (n) => Number(document.body.dataset.predictions) > n && document.body.dataset.busy === "0",
      before,
      { timeout: TIMEOUT },
    );
    const [object] = await page.evaluate(() => window.mobilesam.objects());
    assert.deepEqual(object.points, [shown.point]);
    assert.deepEqual(object.rle, reference.rle, "the click committed the previewed mask");
    assert.equal((await page.evaluate(() => window.mobilesam.preview())).shownRequest, 0, "the click cleared the preview");
    assert.equal(mismatches(await overlayMask(page), expected), 0);
    assert.deepEqual(errors, []);
    await page.close();
  } finally {
    slow.child.kill("SIGTERM");
  }
});
