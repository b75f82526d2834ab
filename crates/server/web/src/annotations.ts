// The annotation state: objects with their clicks and masks, and an undo history.
import type { Mask } from "@mobilesam/client";

/** The image the annotations belong to. */
export interface ImageInfo {
  fileName: string;
  width: number;
  height: number;
}

/** A click prompt in image pixels; label 1 foreground, 0 background. */
export interface ClickPoint {
  x: number;
  y: number;
  label: 0 | 1;
}

/** A box prompt in image pixels: x1, y1, x2, y2. */
export type BoxCorners = [number, number, number, number];

/** One mask the server returned. */
export interface MaskCandidate {
  score: number;
  area: number;
  /** COCO [x, y, width, height]. */
  bbox: [number, number, number, number];
  rle: { size: number[]; counts: string };
  /** 256x256 float32 little-endian logits, for the next video frame's mask_input. */
  lowResLogits: Uint8Array;
  /** Every region's outline, each followed by its holes, as the server traced them. */
  polygons: Polygon[];
  mask: BinaryMask;
}

/** A closed outline on pixel corners: `points` = x0, y0, x1, y1, ...; `hole`: inside the
 * region before it. */
export interface Polygon {
  points: number[];
  hole: boolean;
}

/** A tracked object on a video frame: followed with a mask ("tracked"), followed but not
 * visible on this frame ("occluded", SAM 2.1 memory tracking: no mask, it comes back when
 * visible), or no longer followed until a click corrects it ("lost", the MobileSAM recipe). */
export type TrackState = "tracked" | "occluded" | "lost";

/** One annotated object. */
export interface AnnotatedObject {
  id: number;
  color: [number, number, number];
  points: ClickPoint[];
  box: BoxCorners | null;
  candidates: MaskCandidate[];
  chosen: number;
  /** On video frames: the server's track state on the frame shown (see tracking.ts). */
  state?: TrackState;
}

const PALETTE: [number, number, number][] = [
  [30, 144, 255],
  [255, 99, 71],
  [50, 205, 50],
  [255, 215, 0],
  [186, 85, 211],
  [0, 206, 209],
  [255, 140, 0],
  [199, 21, 133],
];

/** A binary mask, row-major: `data[y * width + x]` is 1 for foreground. */
export interface BinaryMask {
  width: number;
  height: number;
  data: Uint8Array;
}

/** A mask of @mobilesam/client as the page keeps it (plain data, for the undo history). */
export function toCandidate(mask: Mask): MaskCandidate {
  return {
    score: mask.score,
    area: mask.area,
    bbox: mask.xywh,
    rle: { size: [...mask.rle.size], counts: mask.rle.counts },
    lowResLogits: mask.lowResLogits ?? new Uint8Array(0),
    polygons: mask.polygons.map((p) => ({ points: [...p.points], hole: p.hole })),
    mask: { width: mask.width, height: mask.height, data: mask.bitmap },
  };
}

/** The objects of the current image, the selected one, and the undo history. */
export class Annotations {
  objects: AnnotatedObject[] = [];
  current = -1;
  private history: string[] = [];
  private nextId = 1;

  /** The selected object, created on first use. */
  active(): AnnotatedObject {
    if (this.current < 0 || this.current >= this.objects.length) this.addObject();
    return this.objects[this.current];
  }

  /** Starts a new object with the next colour and selects it. */
  addObject(): AnnotatedObject {
    const id = this.nextId++;
    const object: AnnotatedObject = {
      id,
      color: PALETTE[(id - 1) % PALETTE.length],
      points: [],
      box: null,
      candidates: [],
      chosen: 0,
    };
    this.objects.push(object);
    this.current = this.objects.length - 1;
    return object;
  }

  /** Remembers the state before a change, for `undo`. */
  checkpoint(): void {
    this.history.push(
      JSON.stringify({ objects: this.objects, current: this.current, nextId: this.nextId }, (_k, v) =>
        v instanceof Uint8Array ? { __bytes: Array.from(v) } : v,
      ),
    );
  }

  /** Goes back to the state of the last checkpoint; false when there is none. */
  undo(): boolean {
    const snapshot = this.history.pop();
    if (snapshot === undefined) return false;
    const state = JSON.parse(snapshot, (_k, v) =>
      v !== null && typeof v === "object" && "__bytes" in v ? new Uint8Array(v.__bytes) : v,
    );
    this.objects = state.objects;
    this.current = state.current;
    this.nextId = state.nextId;
    return true;
  }

  /** Forgets every object and the history (a new image). */
  clear(): void {
    this.objects = [];
    this.current = -1;
    this.history = [];
    this.nextId = 1;
  }

  /** The chosen mask of an object, if it has one. */
  static chosenMask(object: AnnotatedObject): MaskCandidate | undefined {
    return object.candidates[object.chosen];
  }
}
