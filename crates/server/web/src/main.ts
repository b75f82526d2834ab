// The annotation page: open an image or a video, click to segment, export.
import "./style.css";
import { Code, MobilesamError, type Frame, type PredictOptions, type Session } from "@mobilesam/client";
import {
  Annotations,
  toCandidate,
  type AnnotatedObject,
  type BoxCorners,
  type ClickPoint,
  type ImageInfo,
  type MaskCandidate,
} from "./annotations";
import { connect } from "./connection";
import { download, toCoco, toCocoVideo, toYolo, toYoloVideo } from "./export";
import { showModel } from "./model";
import { drawMasks, drawPrompts } from "./overlay";
import { Playback, type Direction, type Run } from "./playback";
import { Prefetcher } from "./prefetch";
import { LivePreview } from "./preview";
import { applyResult, applyTracked, recordFrame, restoreClicks, type FrameRecord } from "./tracking";
import { canvasJpeg, FrameSource } from "./video";

/** A drag longer than this (in screen pixels) is a box, shorter a click. */
const DRAG_THRESHOLD = 6;
/** Frames prefetched behind the playhead (against the direction of travel), at most; the
 * frames ahead are the *prefetch* setting. */
const PREFETCH_BEHIND = 1;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

const client = connect();
const annotations = new Annotations();
const imageCanvas = $<HTMLCanvasElement>("image-canvas");
const overlayCanvas = $<HTMLCanvasElement>("overlay-canvas");
const promptCanvas = $<HTMLCanvasElement>("prompt-canvas");
const status = $<HTMLSpanElement>("status");

let session: Session | null = null;
let image: ImageInfo | null = null;
let frames: FrameSource | null = null;
/** The video's frames around the playhead, prefetched on the server. */
let prefetcher: Prefetcher | null = null;
/** The direction of the last move between frames (the server reads it from the indices). */
let direction: Direction = 1;
let predictions = 0;
/** Per video frame: the objects' masks and clicks, for the exports and revisits. */
const frameRecords = new Map<number, FrameRecord>();
/** How each video frame was sent and answered, in order (for the tests and the console). */
const frameLog: {
  frameIndex: number;
  sent: "image" | "sha256";
  encodeMs: number;
  decodeMs: number;
  source: string;
  tracked: { id: number; state: string }[];
}[] = [];
/** Serialises server calls: clicks queue behind the one in flight. */
let queue: Promise<void> = Promise.resolve();

function setStatus(text: string, error = false): void {
  status.textContent = text;
  status.classList.toggle("error", error);
}

function describe(error: unknown): string {
  return error instanceof MobilesamError ? error.message : String(error);
}

/** Runs `task` after the server calls already queued; errors go to the status line. */
function enqueue(task: () => Promise<void>): Promise<void> {
  document.body.dataset.busy = "1";
  queue = queue
    .then(task)
    .catch((error) => setStatus(describe(error), true))
    .finally(() => {
      document.body.dataset.busy = "0";
    });
  return queue;
}

function showLatency(id: string, ms: number | null): void {
  $(id).textContent = ms === null ? "–" : `${ms.toFixed(1)} ms`;
}

function resizeCanvases(width: number, height: number): void {
  for (const canvas of [imageCanvas, overlayCanvas, promptCanvas]) {
    canvas.width = width;
    canvas.height = height;
  }
}

function redraw(dragging: BoxCorners | null = null): void {
  drawMasks(overlayCanvas, withPreview(annotations.objects));
  drawPrompts(promptCanvas, annotations.objects, dragging);
  renderObjects();
  renderCandidates();
}

function renderObjects(): void {
  const list = $<HTMLOListElement>("objects");
  list.replaceChildren(
    ...annotations.objects.map((object, index) => {
      const item = document.createElement("li");
      const [r, g, b] = object.color;
      item.style.borderLeft = `12px solid rgb(${r}, ${g}, ${b})`;
      item.classList.toggle("active", index === annotations.current);
      const mask = Annotations.chosenMask(object);
      item.textContent = `object ${object.id}: ${object.points.length} points${object.box ? ", box" : ""}${
        mask ? `, ${mask.area} px` : ""
      }${STATE_NOTES[object.state ?? "tracked"]}`;
      item.dataset.state = object.state ?? "";
      item.classList.toggle("lost", object.state === "lost");
      item.classList.toggle("occluded", object.state === "occluded");
      item.onclick = () => {
        annotations.current = index;
        redraw();
      };
      return item;
    }),
  );
}

/** What the object list says of a tracked object's state on the frame shown. */
const STATE_NOTES = {
  tracked: "",
  occluded: ", occluded: not visible on this frame (still tracked)",
  lost: ", LOST: click to correct",
} as const;

function renderCandidates(): void {
  const box = $<HTMLDivElement>("candidates");
  const object = annotations.objects[annotations.current];
  if (!object) {
    box.replaceChildren();
    return;
  }
  box.replaceChildren(
    ...object.candidates.map((candidate, index) => {
      const button = document.createElement("button");
      button.className = "candidate";
      button.classList.toggle("chosen", index === object.chosen);
      button.textContent = `#${index + 1} score ${candidate.score.toFixed(3)} · ${candidate.area} px`;
      button.onclick = () => {
        annotations.checkpoint();
        object.chosen = index;
        redraw();
      };
      return button;
    }),
  );
}

/** Opens a session on `bytes` (an image, or a video's first frame: `frameIndex` 0). */
async function openSession(bytes: Uint8Array, frameIndex?: number): Promise<void> {
  const started = performance.now();
  session = await client.openSession(bytes, { frameIndex });
  showLatency("lat-encode", session.encodeMs);
  showLatency("lat-round-trip", performance.now() - started);
  document.body.dataset.sessionId = session.id;
}

/** Sends video frame `index` (drawn on the image canvas) as the session's image, with its
 * frame index: by its digest when it was prefetched (no upload, no encode), else as JPEG
 * bytes. A digest the server no longer has (NOT_FOUND: its cache dropped it) falls back to
 * the bytes. */
async function sendFrame(current: Session, index: number): Promise<Frame> {
  const digest = await prefetcher?.digest(index);
  if (digest) {
    try {
      const ready = await current.setImage({ imageSha256: digest }, { frameIndex: index });
      logFrame(ready, "sha256");
      return ready;
    } catch (error) {
      if (!(error instanceof MobilesamError && error.code === Code.NotFound)) throw error;
      prefetcher?.forget(index);
    }
  }
  const ready = await current.setImage(await canvasJpeg(imageCanvas), { frameIndex: index });
  logFrame(ready, "image");
  return ready;
}

function logFrame(ready: Frame, sent: "image" | "sha256"): void {
  frameLog.push({
    frameIndex: ready.frameIndex,
    sent,
    encodeMs: ready.encodeMs,
    decodeMs: ready.decodeMs,
    source: ready.source,
    tracked: ready.tracked.map((o) => ({ id: o.objectId, state: o.state })),
  });
}

/** The prompt of one object: its clicks (one object, several points) and its box. */
function objectPrompt(points: ClickPoint[], box: BoxCorners | null): PredictOptions {
  return {
    points: points.length > 0 ? [points.map((p) => [p.x, p.y])] : undefined,
    labels: points.length > 0 ? [points.map((p) => p.label)] : undefined,
    boxes: box ?? undefined,
  };
}

/** Asks for `object`'s masks with its clicks. On a video the object is tracked by the
 * server from this frame on (a click on a tracked object corrects it). */
async function predict(object: AnnotatedObject): Promise<void> {
  if (!session) throw new Error("open an image first");
  if (object.points.length === 0 && !object.box) {
    object.candidates = [];
    return;
  }
  const multimask = $<HTMLInputElement>("multimask").checked;
  const video = frames !== null;
  const started = performance.now();
  ++predictions;
  const masks = await session.predict({
    ...objectPrompt(object.points, object.box),
    multimask,
    track: video,
    lowResLogits: true,
    polygons: true,
    objectIds: [object.id],
  });
  const roundTrip = performance.now() - started;
  if (frames && image) {
    // Tracked from here on (memory tracking: this frame conditions the object; the
    // answer may say it is occluded here).
    applyResult(object, masks.objects[0]);
    frameRecords.set(frames.index, recordFrame(frames.index, image, annotations.objects));
  } else {
    object.candidates = (masks.objects[0]?.masks ?? []).map(toCandidate);
    object.chosen = object.candidates.reduce(
      (best, candidate, index, all) => (candidate.score > all[best].score ? index : best),
      0,
    );
  }
  showLatency("lat-decode", masks.decodeMs);
  showLatency("lat-round-trip", roundTrip);
  document.body.dataset.predictions = String(predictions);
}

// ---- live preview: the mask under the pointer (see preview.ts) ----

let previewMask: MaskCandidate | null = null;

const preview = new LivePreview(
  async (point) => {
    // The selected object, without creating one (a hover changes nothing until a click).
    const object = annotations.objects[annotations.current] ?? { points: [], box: null };
    if (!session) return null;
    const masks = await session.predict({
      ...objectPrompt([...object.points, point], object.box),
      supersede: true,
      multimask: $<HTMLInputElement>("multimask").checked,
    });
    const candidates = (masks.objects[0]?.masks ?? []).map(toCandidate);
    return candidates.reduce<MaskCandidate | null>((best, c) => (best && best.score >= c.score ? best : c), null);
  },
  (candidate) => {
    previewMask = candidate;
    drawMasks(overlayCanvas, withPreview(annotations.objects));
  },
  (error) => setStatus(describe(error), true),
);

/** Colour of the preview before the first object exists. */
const PREVIEW_COLOR: [number, number, number] = [255, 255, 255];

/** The objects with the preview drawn over the selected object's mask. */
function withPreview(objects: AnnotatedObject[]): AnnotatedObject[] {
  if (!previewMask) return objects;
  const active = objects[annotations.current];
  const color = active?.color ?? PREVIEW_COLOR;
  return [...objects, { id: 0, color, points: [], box: null, candidates: [previewMask], chosen: 0 }];
}

/** Previews a click at the pointer, unless a committed click is still on its way (a
 * superseding preview would abort it). */
function hoverPreview(event: PointerEvent): void {
  if (!image || !session || !$<HTMLInputElement>("live-preview").checked) return;
  if (document.body.dataset.busy === "1") return;
  const [x, y] = toImage(event);
  preview.hover({ x, y, label: 1 });
}

async function openImage(file: File): Promise<void> {
  closeVideo();
  const bitmap = await createImageBitmap(file);
  resizeCanvases(bitmap.width, bitmap.height);
  imageCanvas.getContext("2d")?.drawImage(bitmap, 0, 0);
  image = { fileName: file.name, width: bitmap.width, height: bitmap.height };
  await startSession(new Uint8Array(await file.arrayBuffer()));
}

/** Leaves video mode: playback and prefetching stop, the frames are forgotten. */
function closeVideo(): void {
  playback.stop();
  prefetcher?.stop();
  prefetcher = null;
  frames = null;
  frameRecords.clear();
  frameLog.length = 0;
  $("video-controls").hidden = true;
}

/** Opens a video: the browser decodes it (one <video> element shows the frames, another
 * grabs the ones to prefetch); frame 0 opens the session. */
async function openVideo(file: File): Promise<void> {
  closeVideo();
  const shown = await FrameSource.open($<HTMLVideoElement>("video"), file, fpsSetting());
  const grabbed = await FrameSource.open($<HTMLVideoElement>("prefetch-video"), file, shown.fps);
  await shown.show(0, imageCanvas);
  resizeCanvases(imageCanvas.width, imageCanvas.height);
  await shown.show(0, imageCanvas);
  image = { fileName: frameName(file.name, 0), width: imageCanvas.width, height: imageCanvas.height };
  videoName = file.name;
  direction = 1;
  await startSession(await canvasJpeg(imageCanvas), 0);
  if (!session) return;
  frames = shown;
  prefetcher = new Prefetcher(grabbed, document.createElement("canvas"), session);
  const scrub = $<HTMLInputElement>("scrub");
  scrub.max = String(frames.frameCount - 1);
  $("video-controls").hidden = false;
  showFrameLabel();
  prefetchAround();
}

let videoName = "";

function frameName(video: string, index: number): string {
  return `${video.replace(/\.[^.]*$/, "")}_frame${String(index).padStart(5, "0")}.jpg`;
}

function fpsSetting(): number {
  const value = Number($<HTMLInputElement>("fps").value);
  return Number.isFinite(value) && value > 0 ? Math.min(value, 30) : 5;
}

/** Frames to prefetch ahead of the playhead (the *prefetch* setting, 0 to 16). */
function prefetchSetting(): number {
  const value = Math.floor(Number($<HTMLInputElement>("prefetch").value));
  return Number.isFinite(value) ? Math.min(Math.max(value, 0), 16) : 0;
}

function prefetchAround(): void {
  if (!frames || !prefetcher) return;
  const ahead = prefetchSetting();
  prefetcher.around(frames.index, direction, { ahead, behind: Math.min(ahead, PREFETCH_BEHIND) });
}

function showFrameLabel(): void {
  if (!frames) return;
  $("frame-label").textContent = `frame ${frames.index + 1} / ${frames.frameCount}`;
  if (scrubTarget === null) $<HTMLInputElement>("scrub").value = String(frames.index);
  document.body.dataset.frameIndex = String(frames.index);
}

/** Opens a session on `bytes` (a video's first frame: `frameIndex` 0), with no objects. */
async function startSession(bytes: Uint8Array, frameIndex?: number): Promise<void> {
  if (session) {
    const old = session;
    session = null;
    old.close().catch(() => undefined);
  }
  annotations.clear();
  preview.cancel();
  redraw();
  setStatus("encoding…");
  await openSession(bytes, frameIndex);
  setStatus(`ready: ${image?.width}×${image?.height}; click to segment`);
}

/** Moves to frame `index` (clamped to the clip) and sends it with its frame index; the
 * server follows the tracked objects onto it (SAM 2.1: a frame visited since the last
 * prompt is answered from its stored result). Returns the ids of the objects it lost. */
async function gotoFrame(index: number): Promise<number[]> {
  if (!frames || !session) return [];
  const from = frames.index;
  await frames.show(index, imageCanvas);
  const at = frames.index;
  if (at !== from) direction = at > from ? 1 : -1;
  image = { fileName: frameName(videoName, at), width: imageCanvas.width, height: imageCanvas.height };
  // Clicks belong to the frame they were made on: a revisited frame gets its clicks back.
  restoreClicks(annotations.objects, frameRecords.get(at));
  const started = performance.now();
  const ready = await sendFrame(session, at);
  showLatency("lat-encode", ready.encodeMs);
  showLatency("lat-round-trip", performance.now() - started);
  if (ready.tracked.length > 0) showLatency("lat-decode", ready.decodeMs);
  const lost = applyTracked(annotations.objects, ready.tracked);
  frameRecords.set(at, recordFrame(at, image, annotations.objects));
  redraw();
  showFrameLabel();
  const occluded = annotations.objects.filter((o) => o.state === "occluded").map((o) => o.id);
  setStatus(`frame ${at + 1}${occluded.length > 0 ? `: object ${occluded.join(", ")} occluded` : ""}`);
  prefetchAround();
  return lost;
}

/** Play and track, forward and backward (see playback.ts). */
const playback = new Playback({
  canStep: (step) => frames !== null && frames.index + step >= 0 && frames.index + step < frames.frameCount,
  step: async (step) => {
    let lost: number[] | null = null;
    await enqueue(async () => {
      if (frames) lost = await gotoFrame(frames.index + step);
    });
    return lost;
  },
  fps: fpsSetting,
  changed: showPlayback,
  lost: (ids) =>
    setStatus(`frame ${(frames?.index ?? 0) + 1}: object ${ids.join(", ")} lost; click to correct, then track`),
});

/** The playback buttons' labels: the running one reads "pause". */
const PLAY_BUTTONS: { id: string; run: Run; label: string }[] = [
  { id: "play-reverse", run: { direction: -1, mode: "play" }, label: "◀ play" },
  { id: "play", run: { direction: 1, mode: "play" }, label: "play ▶" },
  { id: "track-reverse", run: { direction: -1, mode: "track" }, label: "◀ track" },
  { id: "track", run: { direction: 1, mode: "track" }, label: "track ▶" },
];

function showPlayback(run: Run | null): void {
  for (const button of PLAY_BUTTONS) {
    const active = run?.direction === button.run.direction && run.mode === button.run.mode;
    $(button.id).textContent = active ? "pause" : button.label;
  }
  // `data-tracking` is 1 while any playback runs (the tests wait for it to end).
  document.body.dataset.tracking = run ? "1" : "0";
  document.body.dataset.playing = run ? `${run.mode} ${run.direction > 0 ? "forward" : "reverse"}` : "";
}

/** The frame the scrub slider asks for while a move is queued (null: none). */
let scrubTarget: number | null = null;

/** Scrubbing: moves to the slider's frame; while earlier moves are on their way only the
 * latest position is kept, so dragging the slider sends no backlog of frames. */
function scrubTo(index: number): void {
  playback.stop();
  const queued = scrubTarget !== null;
  scrubTarget = index;
  if (queued) return;
  void enqueue(async () => {
    const target = scrubTarget;
    scrubTarget = null;
    if (target !== null && frames && target !== frames.index) await gotoFrame(target);
  });
}

// ---- pointer input: click = point, drag = box ----

function toImage(event: PointerEvent): [number, number] {
  const rect = promptCanvas.getBoundingClientRect();
  return [
    ((event.clientX - rect.left) * promptCanvas.width) / rect.width,
    ((event.clientY - rect.top) * promptCanvas.height) / rect.height,
  ];
}

let pressed: { screen: [number, number]; image: [number, number]; button: number } | null = null;

promptCanvas.addEventListener("contextmenu", (event) => event.preventDefault());
promptCanvas.addEventListener("pointerdown", (event) => {
  if (!image) return;
  preview.cancel();
  promptCanvas.setPointerCapture(event.pointerId);
  pressed = { screen: [event.clientX, event.clientY], image: toImage(event), button: event.button };
});
promptCanvas.addEventListener("pointerleave", () => preview.cancel());
promptCanvas.addEventListener("pointermove", (event) => {
  if (!pressed) {
    hoverPreview(event);
    return;
  }
  if (pressed.button !== 0) return;
  const [x, y] = toImage(event);
  drawPrompts(promptCanvas, annotations.objects, corners(pressed.image, [x, y]));
});
promptCanvas.addEventListener("pointerup", (event) => {
  if (!pressed) return;
  const start = pressed;
  pressed = null;
  const end = toImage(event);
  const dragged = Math.hypot(event.clientX - start.screen[0], event.clientY - start.screen[1]) > DRAG_THRESHOLD;
  annotations.checkpoint();
  const object = annotations.active();
  if (dragged && start.button === 0) {
    object.box = corners(start.image, end);
  } else {
    object.points.push({ x: start.image[0], y: start.image[1], label: start.button === 2 ? 0 : 1 });
  }
  redraw();
  void enqueue(async () => {
    await predict(object);
    redraw();
    setStatus(`object ${object.id}: ${Annotations.chosenMask(object)?.area ?? 0} px`);
  });
});

function corners(a: [number, number], b: [number, number]): BoxCorners {
  return [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[0], b[0]), Math.max(a[1], b[1])];
}

// ---- buttons ----

$<HTMLInputElement>("file").addEventListener("change", (event) => {
  const file = (event.target as HTMLInputElement).files?.[0];
  if (!file) return;
  void enqueue(() => (file.type.startsWith("video/") ? openVideo(file) : openImage(file)));
});
$("new-object").onclick = () => {
  annotations.checkpoint();
  annotations.addObject();
  redraw();
};
$("undo").onclick = () => undo();
document.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key === "z") undo();
  if (event.target instanceof HTMLInputElement) return;
  if (event.key === "n") $("new-object").click();
  if (event.key === "ArrowLeft" && frames) $("prev-frame").click();
  if (event.key === "ArrowRight" && frames) $("next-frame").click();
});
function undo(): void {
  if (annotations.undo()) redraw();
}
$("export-coco").onclick = () => {
  if (frames) {
    const name = videoName.replace(/\.[^.]*$/, "") + ".coco.json";
    download(name, toCocoVideo(videoName, [...frameRecords.values()]), "application/json");
  } else if (image) {
    download(image.fileName.replace(/\.[^.]*$/, "") + ".coco.json", toCoco(image, annotations.objects), "application/json");
  }
};
$("export-yolo").onclick = () => {
  if (frames) {
    for (const file of toYoloVideo([...frameRecords.values()])) download(file.fileName, file.text, "text/plain");
  } else if (image) {
    download(image.fileName.replace(/\.[^.]*$/, "") + ".txt", toYolo(image, annotations.objects), "text/plain");
  }
};
$("prev-frame").onclick = () => step(-1);
$("next-frame").onclick = () => step(1);
/** One frame back or forward (a playback stops). */
function step(by: Direction): void {
  playback.stop();
  void enqueue(async () => {
    if (frames && frames.index + by >= 0 && frames.index + by < frames.frameCount) await gotoFrame(frames.index + by);
  });
}
for (const button of PLAY_BUTTONS) $(button.id).onclick = () => void playback.toggle(button.run);
$<HTMLInputElement>("scrub").addEventListener("input", (event) =>
  scrubTo(Number((event.target as HTMLInputElement).value)),
);
$<HTMLInputElement>("prefetch").addEventListener("change", () => prefetchAround());

document.body.dataset.busy = "0";
document.body.dataset.predictions = "0";
showPlayback(null);

// Which model the server serves (GetModelInfo), in the header; an error shows there too.
void showModel(client, $("model"), describe);

/** Read-only view for tests and the console: the objects and the session. */
(window as unknown as { mobilesam: object }).mobilesam = {
  objects: () =>
    annotations.objects.map((o) => ({
      id: o.id,
      points: o.points,
      box: o.box,
      chosen: o.chosen,
      rle: Annotations.chosenMask(o)?.rle,
      state: o.state,
      polygons: Annotations.chosenMask(o)?.polygons,
    })),
  /** Every visited frame's record, ascending frame index. */
  frames: () =>
    [...frameRecords.values()]
      .sort((a, b) => a.index - b.index)
      .map((f) => ({
        index: f.index,
        fileName: f.image.fileName,
        objects: f.objects.map((o) => ({
          id: o.id,
          state: o.state,
          rle: o.mask?.rle,
          score: o.mask?.score,
          polygons: o.mask?.polygons,
          points: o.points,
        })),
      })),
  frameIndex: () => frames?.index ?? 0,
  frameCount: () => frames?.frameCount ?? 0,
  /** Each video frame's SetImage after the first, in order: sent as `image` bytes or by
   * `sha256`, and what the server answered. */
  frameLog: () => frameLog.map((entry) => ({ ...entry })),
  /** Prefetch counts and the frames prefetched so far. */
  prefetch: () => ({ ...(prefetcher?.stats ?? { sent: 0, answered: 0, failed: 0, cancelled: 0 }), ready: prefetcher?.ready() ?? [] }),
  /** The running playback (`{ direction, mode }`) or null. */
  playing: () => playback.running,
  sessionId: () => session?.id ?? "",
  preview: () => ({ ...preview.stats, rle: previewMask?.rle }),
};
