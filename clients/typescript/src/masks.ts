// Masks as the client hands them out: the server's COCO RLE decoded on first use into a
// row-major Uint8Array bitmap, with its score, area, box, stability score and outlines.
import { decodeRle, type Rle } from "./rle.js";
import type { Mask as WireMask } from "./gen/mobilesam/v1/mobilesam_pb.js";

/** A closed outline on pixel corners: `points` = x0, y0, x1, y1, ... (the last point joins
 * the first); `hole`: a hole inside the region before it. */
export interface Polygon {
  points: number[];
  hole: boolean;
}

/** An RGBA colour, each channel 0-255. */
export type Rgba = readonly [number, number, number, number];

/** Options of `Mask.toImageData`. */
export interface ImageDataOptions {
  /** Colour of the foreground pixels (default opaque white). */
  color?: Rgba;
  /** Colour of the background pixels (default transparent). */
  background?: Rgba;
}

/** One mask of an object. */
export class Mask {
  /** Predicted IoU. */
  readonly score: number;
  /** Foreground pixels. */
  readonly area: number;
  /** Tight box of the foreground in pixels, `[x1, y1, x2, y2]` (x2 = x1 + width); all zeros
   * for an empty mask. */
  readonly bbox: [number, number, number, number];
  /** The reference's stability score (offset 1.0). */
  readonly stabilityScore: number;
  /** Every region's outline and every hole (asked for with `polygons: true`; else empty). */
  readonly polygons: Polygon[];
  /** COCO compressed RLE of the full-resolution mask (pycocotools-compatible). */
  readonly rle: Rle;
  /** 256x256 float32 little-endian logits (asked for with `lowResLogits: true`), the
   * `maskInputs` of a later prompt; else null. */
  readonly lowResLogits: Uint8Array | null;
  readonly width: number;
  readonly height: number;
  private decoded: Uint8Array | null = null;

  constructor(fields: {
    score: number;
    area: number;
    bbox: [number, number, number, number];
    stabilityScore?: number;
    polygons?: Polygon[];
    rle: Rle;
    lowResLogits?: Uint8Array | null;
  }) {
    this.score = fields.score;
    this.area = fields.area;
    this.bbox = fields.bbox;
    this.stabilityScore = fields.stabilityScore ?? 0;
    this.polygons = fields.polygons ?? [];
    this.rle = fields.rle;
    this.lowResLogits = fields.lowResLogits ?? null;
    this.height = fields.rle.size[0];
    this.width = fields.rle.size[1];
  }

  /** From a protobuf `Mask`. */
  static fromWire(mask: WireMask): Mask {
    const b = mask.bbox ?? { x1: 0, y1: 0, x2: 0, y2: 0 };
    const size = mask.rle?.size ?? [0, 0];
    return new Mask({
      score: mask.score,
      area: Number(mask.area),
      bbox: [b.x1, b.y1, b.x2, b.y2],
      stabilityScore: mask.stabilityScore,
      polygons: mask.polygons.map((p) => ({ points: Array.from(p.points), hole: p.hole })),
      rle: { size: [size[0] ?? 0, size[1] ?? 0], counts: mask.rle?.counts ?? "" },
      lowResLogits: mask.lowResLogits.length > 0 ? mask.lowResLogits : null,
    });
  }

  /** The mask, row-major: `bitmap[y * width + x]` is 1 for foreground, 0 for background
   * (decoded from the RLE on first use). */
  get bitmap(): Uint8Array {
    this.decoded ??= decodeRle(this.rle);
    return this.decoded;
  }

  /** Whether pixel (x, y) is foreground. */
  at(x: number, y: number): boolean {
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return false;
    return this.bitmap[Math.floor(y) * this.width + Math.floor(x)] === 1;
  }

  /** The box as COCO `[x, y, width, height]`. */
  get xywh(): [number, number, number, number] {
    const [x1, y1, x2, y2] = this.bbox;
    return [x1, y1, x2 - x1, y2 - y1];
  }

  /** The low-res logits as 256x256 floats (row-major), or null. */
  lowResLogitsFloat32(): Float32Array | null {
    const bytes = this.lowResLogits;
    if (!bytes) return null;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const out = new Float32Array(bytes.byteLength / 4);
    for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true);
    return out;
  }

  /** RGBA pixels of the mask (for a canvas' `putImageData`). Browsers (any global
   * `ImageData`); in Node pass the constructor, e.g. from the `canvas` package. */
  toImageData(options: ImageDataOptions = {}, imageData?: typeof ImageData): ImageData {
    const Ctor = imageData ?? (globalThis as { ImageData?: typeof ImageData }).ImageData;
    if (!Ctor) throw new TypeError("toImageData needs ImageData (a browser, or pass its constructor)");
    const [r, g, b, a] = options.color ?? [255, 255, 255, 255];
    const [br, bg, bb, ba] = options.background ?? [0, 0, 0, 0];
    const bitmap = this.bitmap;
    const pixels = new Uint8ClampedArray(bitmap.length * 4);
    for (let i = 0, o = 0; i < bitmap.length; i++, o += 4) {
      const on = bitmap[i] !== 0;
      pixels[o] = on ? r : br;
      pixels[o + 1] = on ? g : bg;
      pixels[o + 2] = on ? b : bb;
      pixels[o + 3] = on ? a : ba;
    }
    return new Ctor(pixels, this.width, this.height);
  }
}
