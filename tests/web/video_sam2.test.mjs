// The page's video mode with SAM 2.1 memory tracking (docs/web.md, docs/tracking.md), in
// headless Chromium against the real `mobilesam serve` on the reduced SAM 2.1 fixture.
//
// The fixture's seeded object-score head calls every frame empty (OCCLUDED); one server
// runs it as it is (the occluded case), another the same checkpoint with the head rescaled
// (tests/web/sam2_visible_checkpoint.py, as the server's memory-tracking test does), where
// the object is visible and its masks can be followed. What the page sent is read off the
// wire (tests/web/wire.mjs) and off the server's metrics, not taken from the page.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  artifacts,
  CLIP_HEIGHT,
  CLIP_WIDTH,
  clickClip,
  decodeRle,
  download,
  downloads,
  idle,
  launchBrowser,
  metric,
  mismatches,
  overlayMask,
  recordClip,
  root,
  sam2Checkpoint,
  startServer,
  TIMEOUT,
} from "./support.mjs";
import { recordSetImages } from "./wire.mjs";

const ENCODES = "mobilesam_encode_duration_seconds_count";
const DECODES = "mobilesam_decode_duration_seconds_count";

let browser;

before(async () => {
  mkdirSync(artifacts, { recursive: true });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

/** The reduced SAM 2.1 checkpoint with the rescaled object-score head, in the artefacts. */
function visibleCheckpoint() {
  const path = join(artifacts, "sam2.1_hiera_r_visible.pt");
  execFileSync("python3", [join(root, "tests/web/sam2_visible_checkpoint.py"), sam2Checkpoint, path]);
  return path;
}

/** A page on `server` with a recorded clip open at `fps` frames per second (10: every
 * recorded frame): its SetImage calls on the wire and its errors are collected. */
async function openClip(server, fps) {
  const page = await browser.newPage({ viewport: { width: 1100, height: 760 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  const wire = recordSetImages(page);
  await page.goto(`http://${server.addr}/`);
  await page.waitForFunction(() => document.getElementById("model").dataset.state === "ready", null, { timeout: TIMEOUT });
  assert.equal(await page.getAttribute("#model", "data-memory-tracking"), "true");
  const clip = await recordClip(page);
  await page.fill("#fps", String(fps));
  await page.setInputFiles("#file", { name: "clip.webm", mimeType: "video/webm", buffer: clip });
  await idle(page);
  const frameCount = await page.evaluate(() => window.mobilesam.frameCount());
  assert.ok(frameCount >= fps, `a clip of ${frameCount} frames (1.5 s at ${fps} fps)`);
  return { page, errors, wire, frameCount };
}

/** Moves the scrub slider to `index` (as a drag does: an input event) and waits for the
 * frame. */
async function scrub(page, index) {
  await page.$eval("#scrub", (slider, value) => {
    slider.value = String(value);
    slider.dispatchEvent(new Event("input", { bubbles: true }));
  }, index);
  await page.waitForFunction((i) => window.mobilesam.frameIndex() === i && document.body.dataset.busy === "0", index, {
    timeout: TIMEOUT,
  });
}

/** Presses a playback button and waits until it has stopped (the button's handler marks
 * the playback running before it returns). */
async function playUntilStopped(page, button) {
  await page.click(button);
  await idle(page);
}

test("SAM 2.1 video: click mid-clip, play forward and back, prefetch, revisit, correct, export", { timeout: 20 * TIMEOUT }, async () => {
  const server = await startServer([], {}, { checkpoint: visibleCheckpoint() });
  try {
    const { page, errors, wire, frameCount } = await openClip(server, 10);
    const last = frameCount - 1;
    const middle = Math.floor(frameCount / 2);

    // Frame 0 opened the session with its index; the frames after it are prefetched.
    assert.equal(wire[0].frameIndex, 0, "frame 0 is sent with frame_index 0");
    await page.waitForFunction(() => window.mobilesam.prefetch().ready.includes(1), null, { timeout: TIMEOUT });

    // Scrub to the middle and click the cat there: a conditioning frame.
    await scrub(page, middle);
    await clickClip(page, 160, 120);
    const [clicked] = await page.evaluate(() => window.mobilesam.objects());
    assert.equal(clicked.state, "tracked", "the rescaled head sees the object");
    const clickedArea = decodeRle(clicked.rle.size, clicked.rle.counts).reduce((s, v) => s + v, 0);
    assert.ok(clickedArea > 0, "a visible mask on the clicked frame");

    // Play forward to the end, then backward to frame 0: the mask follows on every frame.
    await playUntilStopped(page, "#play");
    assert.equal(await page.evaluate(() => window.mobilesam.frameIndex()), last, "played to the last frame");
    const decodesAtEnd = await metric(server, DECODES);
    await playUntilStopped(page, "#play-reverse");
    assert.equal(await page.evaluate(() => window.mobilesam.frameIndex()), 0, "played back to frame 0");

    const frames = await page.evaluate(() => window.mobilesam.frames());
    assert.deepEqual(frames.map((f) => f.index), [...Array(frameCount).keys()], "a record for every frame");
    let visible = 0;
    for (const frame of frames) {
      assert.equal(frame.objects.length, 1, `frame ${frame.index}: one object`);
      const [object] = frame.objects;
      assert.equal(object.id, 1);
      assert.ok(["tracked", "occluded"].includes(object.state), `frame ${frame.index}: state ${object.state}`);
      if (object.state === "tracked") {
        visible++;
        assert.deepEqual(object.rle.size, [CLIP_HEIGHT, CLIP_WIDTH]);
        assert.ok(object.polygons.length > 0, `frame ${frame.index}: the server's outlines`);
      } else {
        assert.equal(object.rle, undefined, `frame ${frame.index}: an occluded object has no mask`);
      }
    }
    // The rescaled head may still call a frame or two of this clip empty (which ones
    // depends on the browser's VP8 encoding of the recording).
    assert.ok(visible > frameCount / 2, `the object is visible on ${visible} of ${frameCount} frames`);
    const tracked = frames.filter((f) => f.objects[0].state === "tracked");
    assert.ok(
      new Set(tracked.map((f) => f.objects[0].rle.counts)).size > 1,
      "the masks change as the cat slides",
    );
    // The overlay shows frame 0's mask.
    const shown = frames[0].objects[0];
    if (shown.state === "tracked") {
      assert.equal(mismatches(await overlayMask(page), decodeRle(shown.rle.size, shown.rle.counts)), 0);
    }

    // On the way back the frames visited since the click were answered from the stored
    // results (no model work), the ones before the click were tracked in reverse.
    const log = await page.evaluate(() => window.mobilesam.frameLog());
    writeFileSync(join(artifacts, "video_sam2_frames.json"), JSON.stringify({ frames, log }, null, 1));
    const back = log.slice(log.findIndex((e) => e.frameIndex === last) + 1);
    assert.deepEqual(back.map((e) => e.frameIndex), [...Array(last).keys()].reverse());
    for (const entry of back) {
      const stored = entry.frameIndex >= middle;
      assert.equal(entry.decodeMs === 0, stored, `frame ${entry.frameIndex}: ${stored ? "stored" : "tracked"} (${entry.decodeMs} ms)`);
      assert.deepEqual(entry.tracked.map((o) => o.id), [1]);
    }
    assert.equal(await metric(server, DECODES) - decodesAtEnd, middle, "one tracking job per frame before the click");

    // On the wire: every frame after the first was sent with its frame index; frames near
    // the playhead were prefetched (bytes, no index) and then sent by digest alone.
    const frameCalls = wire.filter((c) => !c.prefetch);
    const prefetches = wire.filter((c) => c.prefetch);
    assert.ok(frameCalls.every((c) => c.frameIndex !== undefined), "every SetImage of a frame has frame_index");
    assert.deepEqual(
      frameCalls.map((c) => c.frameIndex),
      [0, middle, ...Array.from({ length: last - middle }, (_, k) => middle + 1 + k), ...[...Array(last).keys()].reverse()],
      "the frames in the order shown",
    );
    const byDigest = frameCalls.filter((c) => c.imageSha256 !== "");
    assert.ok(prefetches.length > 0 && prefetches.every((c) => c.image > 0 && c.imageSha256 === ""), "prefetches carry the bytes");
    assert.ok(byDigest.length >= frameCount / 2, `${byDigest.length} frames sent by digest alone`);
    // A frame goes by digest only after its bytes went as a prefetch.
    const prefetched = new Set(prefetches.map((c) => c.imageDigest));
    assert.ok(byDigest.every((c) => c.image === 0 && prefetched.has(c.imageSha256)), "frames by digest were prefetched");
    // Prefetches of frames the playhead left (the scrub) are aborted; the others answered.
    const stats = await page.evaluate(() => window.mobilesam.prefetch());
    assert.equal(await metric(server, 'mobilesam_requests_total{kind="prefetch",code="OK"}'), stats.answered);
    assert.ok(stats.answered <= prefetches.length && prefetches.length <= stats.sent, JSON.stringify(stats));
    assert.equal(stats.failed, 0);
    // No flood: each frame is prefetched once, again only after an aborted prefetch.
    assert.ok(
      prefetches.length <= frameCount + stats.cancelled,
      `${prefetches.length} prefetches (${stats.cancelled} cancelled) for ${frameCount} frames`,
    );

    // Scrub back to a frame visited by digest: its stored mask, no encode, no decode.
    const revisit = middle + 2;
    const before = { encodes: await metric(server, ENCODES), decodes: await metric(server, DECODES) };
    const recorded = frames[revisit].objects[0];
    await scrub(page, revisit);
    const answer = (await page.evaluate(() => window.mobilesam.frameLog())).at(-1);
    assert.deepEqual(
      { frameIndex: answer.frameIndex, sent: answer.sent, encodeMs: answer.encodeMs, decodeMs: answer.decodeMs, source: answer.source },
      { frameIndex: revisit, sent: "sha256", encodeMs: 0, decodeMs: 0, source: "local_cache" },
    );
    assert.deepEqual(
      { encodes: await metric(server, ENCODES), decodes: await metric(server, DECODES) },
      before,
      "a revisit costs no encode and no decode",
    );
    const [again] = await page.evaluate(() => window.mobilesam.objects());
    assert.deepEqual(again.rle, recorded.rle, "the stored mask is shown again");

    // Correct on this frame: a background click; the next frame is tracked again.
    await clickClip(page, 40, 40);
    const [corrected] = await page.evaluate(() => window.mobilesam.objects());
    assert.equal(corrected.points.length, 1);
    const correctedRecord = (await page.evaluate(() => window.mobilesam.frames()))[revisit].objects[0];
    assert.deepEqual(correctedRecord.points, corrected.points, "the click is kept with the frame");
    const decodesBeforeNext = await metric(server, DECODES);
    await page.click("#next-frame");
    await page.waitForFunction((i) => window.mobilesam.frameIndex() === i && document.body.dataset.busy === "0", revisit + 1, {
      timeout: TIMEOUT,
    });
    const next = (await page.evaluate(() => window.mobilesam.frameLog())).at(-1);
    assert.ok(next.decodeMs > 0, "after the correction the next frame is tracked again");
    assert.equal(await metric(server, DECODES) - decodesBeforeNext, 1);

    // Exports: every frame, ascending, whatever order they were visited in; one annotation
    // per frame where the object is visible.
    const finalFrames = await page.evaluate(() => window.mobilesam.frames());
    const coco = JSON.parse(await download(page, "#export-coco", "clip_sam2.coco.json"));
    assert.deepEqual(coco.images.map((i) => i.frame_index), [...Array(frameCount).keys()]);
    const visibleFrames = finalFrames.filter((f) => f.objects[0].state === "tracked" && f.objects[0].rle);
    assert.deepEqual(coco.annotations.map((a) => a.image_id - 1), visibleFrames.map((f) => f.index));
    assert.ok(coco.annotations.every((a) => a.object_id === 1 && a.area > 0));
    const labels = await downloads(page, "#export-yolo", frameCount);
    assert.equal(labels.length, frameCount, "one YOLO label file per frame");
    for (const file of labels) {
      const index = Number(file.suggestedFilename().match(/_frame(\d+)\.txt$/)[1]);
      const lines = readFileSync(await file.path(), "utf8").trim().split("\n").filter(Boolean);
      const expected = finalFrames[index].objects[0].state === "tracked" ? 1 : 0;
      assert.equal(lines.length, expected, `frame ${index}: ${expected} label line(s)`);
    }

    await page.screenshot({ path: join(artifacts, "video_sam2.png"), fullPage: true });
    assert.deepEqual(errors, [], "no page errors");
    assert.equal(await page.evaluate(() => document.getElementById("status").classList.contains("error")), false);
    await page.close();
  } finally {
    server.child.kill("SIGTERM");
  }
});

test("SAM 2.1 video: an occluded object is shown as such, and play goes on through it", { timeout: 20 * TIMEOUT }, async () => {
  // The seeded head: the object is occluded on every frame.
  const server = await startServer([], {}, { checkpoint: sam2Checkpoint });
  try {
    const { page, errors, frameCount } = await openClip(server, 5);
    await clickClip(page, 160, 120);
    const [object] = await page.evaluate(() => window.mobilesam.objects());
    assert.equal(object.state, "occluded");
    assert.equal(object.rle, undefined, "no mask for an occluded object");
    assert.equal(await page.getAttribute("#objects li", "data-state"), "occluded");
    assert.match(await page.textContent("#objects li"), /occluded/);
    assert.equal(mismatches(await overlayMask(page), new Uint8Array(CLIP_WIDTH * CLIP_HEIGHT)), 0, "nothing drawn");

    // Track stops on lost objects only: an occluded one is followed to the end.
    await playUntilStopped(page, "#track");
    assert.equal(await page.evaluate(() => window.mobilesam.frameIndex()), frameCount - 1, "tracked to the last frame");
    const frames = await page.evaluate(() => window.mobilesam.frames());
    assert.equal(frames.length, frameCount);
    for (const frame of frames) assert.deepEqual(frame.objects.map((o) => [o.id, o.state, o.rle]), [[1, "occluded", undefined]]);
    assert.match(await page.textContent("#status"), /occluded/);
    const coco = JSON.parse(await download(page, "#export-coco", "clip_occluded.coco.json"));
    assert.equal(coco.images.length, frameCount);
    assert.deepEqual(coco.annotations, [], "occluded objects have no annotation");
    assert.deepEqual(errors, [], "no page errors");
    await page.close();
  } finally {
    server.child.kill("SIGTERM");
  }
});
