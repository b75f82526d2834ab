// Exports: COCO JSON (RLE segmentations) and YOLO segmentation labels (polygons).
import { Annotations, type AnnotatedObject, type MaskCandidate } from "./annotations";
import type { BinaryMask } from "./rle";
import type { FrameRecord } from "./tracking";

/** The image the annotations belong to. */
export interface ImageInfo {
  fileName: string;
  width: number;
  height: number;
}

/** COCO detection JSON with one category, `object`, and RLE segmentations. */
export function toCoco(image: ImageInfo, objects: AnnotatedObject[]): string {
  const annotations = objects
    .map((object) => ({ object, mask: Annotations.chosenMask(object) }))
    .filter(({ mask }) => mask !== undefined && mask.area > 0)
    .map(({ object, mask }, index) => ({
      id: index + 1,
      image_id: 1,
      category_id: 1,
      segmentation: { size: mask!.rle.size, counts: mask!.rle.counts },
      area: mask!.area,
      bbox: mask!.bbox,
      iscrowd: 0,
      score: mask!.score,
      object_id: object.id,
    }));
  return JSON.stringify(
    {
      images: [{ id: 1, file_name: image.fileName, width: image.width, height: image.height }],
      annotations,
      categories: [{ id: 1, name: "object" }],
    },
    null,
    2,
  );
}

/** YOLO segmentation labels: `0 x1 y1 x2 y2 ...` per object, normalised to 0-1, the outer
 * contour of each mask's largest connected region. */
export function toYolo(objects: AnnotatedObject[]): string {
  return yoloLines(objects.map((object) => Annotations.chosenMask(object)));
}

function yoloLines(masks: (MaskCandidate | undefined)[]): string {
  const lines: string[] = [];
  for (const candidate of masks) {
    const mask = candidate?.mask;
    if (!mask) continue;
    const polygon = outerContour(mask);
    if (polygon.length < 3) continue;
    const coords = polygon.flatMap(([x, y]) => [
      ((x + 0.5) / mask.width).toFixed(6),
      ((y + 0.5) / mask.height).toFixed(6),
    ]);
    lines.push(`0 ${coords.join(" ")}`);
  }
  return lines.length > 0 ? lines.join("\n") + "\n" : "";
}

/** COCO for a video: one image per frame (with `video_id` and `frame_index`), one
 * annotation per object with a mask on that frame (`object_id` is the track). */
export function toCocoVideo(videoName: string, frames: FrameRecord[]): string {
  const sorted = [...frames].sort((a, b) => a.index - b.index);
  const images = sorted.map((frame) => ({
    id: frame.index + 1,
    file_name: frame.image.fileName,
    width: frame.image.width,
    height: frame.image.height,
    video_id: 1,
    frame_index: frame.index,
  }));
  const annotations = sorted
    .flatMap((frame) =>
      frame.objects
        .filter((o) => o.mask !== undefined && o.mask.area > 0)
        .map((o) => ({ frame, object: o, mask: o.mask! })),
    )
    .map(({ frame, object, mask }, index) => ({
      id: index + 1,
      image_id: frame.index + 1,
      category_id: 1,
      segmentation: { size: mask.rle.size, counts: mask.rle.counts },
      area: mask.area,
      bbox: mask.bbox,
      iscrowd: 0,
      score: mask.score,
      object_id: object.id,
    }));
  return JSON.stringify(
    { videos: [{ id: 1, name: videoName }], images, annotations, categories: [{ id: 1, name: "object" }] },
    null,
    2,
  );
}

/** YOLO-seg label files for a video: one per frame, named after the frame's image. */
export function toYoloVideo(frames: FrameRecord[]): { fileName: string; text: string }[] {
  return [...frames]
    .sort((a, b) => a.index - b.index)
    .map((frame) => ({
      fileName: frame.image.fileName.replace(/\.[^.]*$/, "") + ".txt",
      text: yoloLines(frame.objects.map((o) => o.mask)),
    }));
}

/** Pixels of the largest 4-connected foreground region. */
function largestRegion(mask: BinaryMask): Uint8Array {
  const { width, height, data } = mask;
  const label = new Int32Array(width * height);
  let best = 0;
  let bestSize = 0;
  let next = 1;
  const stack: number[] = [];
  for (let start = 0; start < data.length; start++) {
    if (data[start] === 0 || label[start] !== 0) continue;
    let size = 0;
    label[start] = next;
    stack.push(start);
    while (stack.length > 0) {
      const i = stack.pop()!;
      size++;
      const x = i % width;
      const neighbours = [x > 0 ? i - 1 : -1, x < width - 1 ? i + 1 : -1, i - width, i + width];
      for (const n of neighbours) {
        if (n >= 0 && n < data.length && data[n] !== 0 && label[n] === 0) {
          label[n] = next;
          stack.push(n);
        }
      }
    }
    if (size > bestSize) {
      bestSize = size;
      best = next;
    }
    next++;
  }
  const region = new Uint8Array(width * height);
  for (let i = 0; i < region.length; i++) region[i] = label[i] === best && best > 0 ? 1 : 0;
  return region;
}

// The 8 neighbours, clockwise from west (image y grows downwards).
const DIRECTIONS: [number, number][] = [
  [-1, 0],
  [-1, -1],
  [0, -1],
  [1, -1],
  [1, 0],
  [1, 1],
  [0, 1],
  [-1, 1],
];

/** Moore-neighbour tracing of the outer boundary of the largest region, as pixel
 * coordinates, with collinear runs merged. */
export function outerContour(mask: BinaryMask): [number, number][] {
  const { width, height } = mask;
  const region = largestRegion(mask);
  const inside = (x: number, y: number) =>
    x >= 0 && y >= 0 && x < width && y < height && region[y * width + x] === 1;
  const first = region.indexOf(1);
  if (first < 0) return [];
  const start: [number, number] = [first % width, Math.floor(first / width)];
  const contour: [number, number][] = [start];
  let [cx, cy] = start;
  let from = 0; // entered the start pixel from the west (raster order guarantees it is empty)
  const limit = 4 * width * height + 8;
  for (let steps = 0; steps < limit; steps++) {
    let found = -1;
    for (let k = 1; k <= 8; k++) {
      const d = (from + k) % 8;
      if (inside(cx + DIRECTIONS[d][0], cy + DIRECTIONS[d][1])) {
        found = d;
        break;
      }
    }
    if (found < 0) break; // a single pixel
    cx += DIRECTIONS[found][0];
    cy += DIRECTIONS[found][1];
    from = (found + 4) % 8; // look from the pixel we came from
    if (cx === start[0] && cy === start[1]) break;
    contour.push([cx, cy]);
  }
  return simplify(contour);
}

function simplify(points: [number, number][]): [number, number][] {
  if (points.length < 3) return points;
  const out: [number, number][] = [];
  for (let i = 0; i < points.length; i++) {
    const prev = points[(i + points.length - 1) % points.length];
    const here = points[i];
    const next = points[(i + 1) % points.length];
    const cross = (here[0] - prev[0]) * (next[1] - here[1]) - (here[1] - prev[1]) * (next[0] - here[0]);
    if (cross !== 0) out.push(here);
  }
  return out.length >= 3 ? out : points;
}

/** Offers `text` as a file download. */
export function download(fileName: string, text: string, type: string): void {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = document.createElement("a");
  link.href = url;
  link.download = fileName;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
