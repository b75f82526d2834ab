// The annotation page: open an image or a video, click to segment, export.
import "./style.css";
import { MobilesamError, type PredictOptions, type Session } from "@mobilesam/client";
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
import { LivePreview } from "./preview";
import { applyTracked, recordFrame, type FrameRecord } from "./tracking";
import { canvasJpeg, FrameSource } from "./video";

/** A drag longer than this (in screen pixels) is a box, shorter a click. */
const DRAG_THRESHOLD = 6;

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
let playing = false;
let tracking = false;
let predictions = 0;
/** Per video frame: the objects' masks, for the exports. */
const frameRecords = new Map<number, FrameRecord>();
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
      }${object.state === "lost" ? ", LOST: click to correct" : ""}`;
      item.classList.toggle("lost", object.state === "lost");
      item.onclick = () => {
        annotations.current = index;
        redraw();
      };
      return item;
    }),
  );
}

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

/** Sends `bytes` as the session's image (a new session, or the next frame of this one).
 * On a video the server follows the tracked objects onto the frame: their masks are
 * applied; returns the ids of the objects it lost. */
async function setImage(bytes: Uint8Array): Promise<number[]> {
  const started = performance.now();
  const ready = session ? await session.setImage(bytes) : null;
  if (!session) session = await client.openSession(bytes);
  showLatency("lat-encode", ready?.encodeMs ?? session.encodeMs);
  showLatency("lat-round-trip", performance.now() - started);
  document.body.dataset.sessionId = session.id;
  if (!ready || ready.tracked.length === 0) return [];
  showLatency("lat-decode", ready.decodeMs);
  return applyTracked(annotations.objects, ready.tracked);
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
  object.candidates = (masks.objects[0]?.masks ?? []).map(toCandidate);
  object.chosen = object.candidates.reduce(
    (best, candidate, index, all) => (candidate.score > all[best].score ? index : best),
    0,
  );
  showLatency("lat-decode", masks.decodeMs);
  showLatency("lat-round-trip", roundTrip);
  if (frames && image) {
    object.state = masks.objects[0]?.state === "lost" ? "lost" : "tracked";
    frameRecords.set(frames.index, recordFrame(frames.index, image, annotations.objects));
  }
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
  frames = null;
  $("video-controls").hidden = true;
  const bitmap = await createImageBitmap(file);
  resizeCanvases(bitmap.width, bitmap.height);
  imageCanvas.getContext("2d")?.drawImage(bitmap, 0, 0);
  image = { fileName: file.name, width: bitmap.width, height: bitmap.height };
  await startSession(new Uint8Array(await file.arrayBuffer()));
}

async function openVideo(file: File): Promise<void> {
  frames = await FrameSource.open($<HTMLVideoElement>("video"), file, fpsSetting());
  $("video-controls").hidden = false;
  await frames.show(0, imageCanvas);
  resizeCanvases(imageCanvas.width, imageCanvas.height);
  await frames.show(0, imageCanvas);
  image = { fileName: frameName(file.name, 0), width: imageCanvas.width, height: imageCanvas.height };
  videoName = file.name;
  frameRecords.clear();
  await startSession(await canvasJpeg(imageCanvas));
  showFrameLabel();
}

let videoName = "";

function frameName(video: string, index: number): string {
  return `${video.replace(/\.[^.]*$/, "")}_frame${String(index).padStart(5, "0")}.jpg`;
}

function fpsSetting(): number {
  const value = Number($<HTMLInputElement>("fps").value);
  return Number.isFinite(value) && value > 0 ? Math.min(value, 30) : 5;
}

function showFrameLabel(): void {
  if (frames) $("frame-label").textContent = `frame ${frames.index + 1} / ${frames.frameCount}`;
}

async function startSession(bytes: Uint8Array): Promise<void> {
  if (session) {
    const old = session;
    session = null;
    old.close().catch(() => undefined);
  }
  annotations.clear();
  preview.cancel();
  redraw();
  setStatus("encoding…");
  await setImage(bytes);
  setStatus(`ready: ${image?.width}×${image?.height}; click to segment`);
}

/** Moves to frame `index`: sends it (JPEG) as the session's next image; the server
 * follows the tracked objects onto it. Returns the ids of the objects it lost. */
async function gotoFrame(index: number): Promise<number[]> {
  if (!frames) return [];
  await frames.show(index, imageCanvas);
  image = { fileName: frameName(videoName, frames.index), width: imageCanvas.width, height: imageCanvas.height };
  // Clicks belong to the frame they were made on; the server carries the objects over.
  for (const object of annotations.objects) {
    object.points = [];
    object.box = null;
  }
  const lost = await setImage(await canvasJpeg(imageCanvas));
  frameRecords.set(frames.index, recordFrame(frames.index, image, annotations.objects));
  redraw();
  showFrameLabel();
  setStatus(`frame ${frames.index + 1}`);
  return lost;
}

/** Track: steps through the frames, the server following every object, and pauses on the
 * first frame where an object is lost (a click corrects it; Track goes on from there). */
async function track(): Promise<void> {
  tracking = !tracking;
  $("track").textContent = tracking ? "pause tracking" : "track";
  document.body.dataset.tracking = tracking ? "1" : "0";
  while (tracking && frames && frames.index < frames.frameCount - 1) {
    let lost: number[] = [];
    await enqueue(async () => {
      lost = await gotoFrame((frames?.index ?? 0) + 1);
    });
    if (lost.length > 0) {
      setStatus(`frame ${(frames?.index ?? 0) + 1}: object ${lost.join(", ")} lost; click to correct, then track`);
      break;
    }
  }
  tracking = false;
  $("track").textContent = "track";
  document.body.dataset.tracking = "0";
}

async function play(): Promise<void> {
  playing = !playing;
  $("play").textContent = playing ? "pause" : "play";
  while (playing && frames && frames.index < frames.frameCount - 1) {
    const started = performance.now();
    await enqueue(async () => {
      await gotoFrame((frames?.index ?? 0) + 1);
    });
    const wait = 1000 / fpsSetting() - (performance.now() - started);
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  }
  playing = false;
  $("play").textContent = "play";
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
  if (event.key === "n" && !(event.target instanceof HTMLInputElement)) $("new-object").click();
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
$("prev-frame").onclick = () =>
  void enqueue(async () => {
    await gotoFrame((frames?.index ?? 0) - 1);
  });
$("next-frame").onclick = () =>
  void enqueue(async () => {
    await gotoFrame((frames?.index ?? 0) + 1);
  });
$("play").onclick = () => void play();
$("track").onclick = () => void track();

document.body.dataset.busy = "0";
document.body.dataset.predictions = "0";
document.body.dataset.tracking = "0";

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
  frames: () =>
    [...frameRecords.values()].map((f) => ({
      index: f.index,
      fileName: f.image.fileName,
      objects: f.objects.map((o) => ({
        id: o.id,
        state: o.state,
        rle: o.mask?.rle,
        score: o.mask?.score,
        polygons: o.mask?.polygons,
      })),
    })),
  frameIndex: () => frames?.index ?? 0,
  sessionId: () => session?.id ?? "",
  preview: () => ({ ...preview.stats, rle: previewMask?.rle }),
};
