// Exports built from the outlines the server traced (`Prompt.return_polygons`: every region
// and its holes on pixel corners, the code `mobilesam annotate` uses), never traced here.
import {
  Annotations,
  type AnnotatedObject,
  type ImageInfo,
  type MaskCandidate,
  type Polygon,
} from "./annotations";
import type { FrameRecord } from "./tracking";

type Point = [number, number];

/** A flat `x0, y0, x1, y1, ...` list as points. */
function toPoints(flat: number[]): Point[] {
  const points: Point[] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) points.push([flat[i], flat[i + 1]]);
  return points;
}

/** COCO detection JSON with one category, `object`. A mask without holes is a list of
 * polygons, one per region (COCO's polygon form, in pixels); a mask with holes keeps its
 * exact RLE, which polygons cannot express. Area and bbox are the server's. */
export function toCoco(image: ImageInfo, objects: AnnotatedObject[]): string {
  const annotations = objects
    .map((object) => ({ object, mask: Annotations.chosenMask(object) }))
    .filter(({ mask }) => mask !== undefined && mask.area > 0)
    .map(({ object, mask }, index) => ({
      id: index + 1,
      image_id: 1,
      category_id: 1,
      segmentation: cocoSegmentation(mask!),
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

/** YOLO segmentation labels: `0 x1 y1 x2 y2 ...` per object, pixel corners divided by the
 * image width and height, six decimals (as `mobilesam annotate` writes them). An object of
 * several regions is one polygon: the regions joined by zero-width bridges
 * ([`joinRegions`]), as Ultralytics joins a mask's contours; holes are left out (the format
 * has none). */
export function toYolo(image: ImageInfo, objects: AnnotatedObject[]): string {
  return yoloLines(
    image,
    objects.map((object) => Annotations.chosenMask(object)),
  );
}

/** COCO's segmentation of one mask: a list of polygons, one per region, when it has no
 * holes; its exact RLE otherwise (polygons cannot express holes). */
function cocoSegmentation(mask: MaskCandidate): number[][] | MaskCandidate["rle"] {
  return mask.polygons.some((p) => p.hole)
    ? { size: mask.rle.size, counts: mask.rle.counts }
    : mask.polygons.map((p) => p.points);
}

/** One YOLO line per mask with an outline, from the server's polygons. */
function yoloLines(image: ImageInfo, masks: (MaskCandidate | undefined)[]): string {
  const lines: string[] = [];
  for (const mask of masks) {
    const outline = joinRegions(mask?.polygons ?? []);
    if (outline.length < 3) continue;
    const coords = outline.flatMap(([x, y]) => [
      (x / image.width).toFixed(6),
      (y / image.height).toFixed(6),
    ]);
    lines.push(`0 ${coords.join(" ")}`);
  }
  return lines.length > 0 ? lines.join("\n") + "\n" : "";
}

/** COCO for a video: one image per frame (with `video_id` and `frame_index`), one
 * annotation per object with a mask on that frame (`object_id` is the track). The
 * segmentations are the server's polygons (the page asks for them on track prompts), as in
 * [`toCoco`]. */
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
      segmentation: cocoSegmentation(mask),
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
      text: yoloLines(
        frame.image,
        frame.objects.map((o) => o.mask),
      ),
    }));
}

/** The regions (holes skipped) as one closed path: each further region is spliced in at the
 * vertex of the path nearest to it, going out to it, around it, and back. */
export function joinRegions(polygons: Polygon[]): Point[] {
  const regions = polygons.filter((p) => !p.hole).map((p) => toPoints(p.points));
  if (regions.length === 0) return [];
  let path = regions[0];
  for (const region of regions.slice(1)) {
    if (region.length === 0) continue;
    let best = { at: 0, from: 0, d: Infinity };
    path.forEach(([px, py], at) => {
      region.forEach(([rx, ry], from) => {
        const d = (px - rx) ** 2 + (py - ry) ** 2;
        if (d < best.d) best = { at, from, d };
      });
    });
    const around = [...region.slice(best.from), ...region.slice(0, best.from), region[best.from]];
    path = [...path.slice(0, best.at + 1), ...around, ...path.slice(best.at)];
  }
  return path;
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
