// COCO compressed RLE (pycocotools' string form): decoding to a row-major bitmap, and
// encoding (for tests and for clients that build masks themselves).

/** COCO RLE as the server sends it: `size` = [height, width], column-major runs. */
export interface Rle {
  size: [number, number];
  counts: string;
}

/** Decodes pycocotools' compressed counts string into run lengths (background first). */
export function decodeCounts(counts: string): number[] {
  const runs: number[] = [];
  let p = 0;
  while (p < counts.length) {
    let value = 0;
    let k = 0;
    let more = true;
    while (more) {
      if (p >= counts.length) throw new RangeError("truncated RLE counts");
      const c = counts.charCodeAt(p) - 48;
      if (c < 0 || c > 63) throw new RangeError(`RLE counts has an invalid character at ${p}`);
      value += (c & 0x1f) * 2 ** (5 * k);
      more = (c & 0x20) !== 0;
      p += 1;
      k += 1;
      if (!more && (c & 0x10) !== 0) value -= 2 ** (5 * k);
    }
    if (runs.length > 2) value += runs[runs.length - 2];
    runs.push(value);
  }
  return runs;
}

/** Encodes run lengths (background first) as pycocotools' compressed counts string. */
export function encodeCounts(runs: readonly number[]): string {
  let out = "";
  runs.forEach((run, i) => {
    let x = i > 2 ? run - runs[i - 2] : run;
    let more = true;
    while (more) {
      let c = x & 0x1f;
      x = Math.floor(x / 32);
      more = c & 0x10 ? x !== -1 : x !== 0;
      if (more) c |= 0x20;
      out += String.fromCharCode(c + 48);
    }
  });
  return out;
}

/** Decodes a COCO RLE into a row-major bitmap: `bitmap[y * width + x]` is 1 for foreground. */
export function decodeRle(rle: { size: readonly number[]; counts: string }): Uint8Array {
  const [height, width] = rle.size;
  if (!Number.isInteger(height) || !Number.isInteger(width) || height < 0 || width < 0) {
    throw new RangeError(`RLE size must be [height, width], found [${rle.size.join(", ")}]`);
  }
  const total = width * height;
  const bitmap = new Uint8Array(total);
  let position = 0;
  let foreground = false;
  for (const run of decodeCounts(rle.counts)) {
    if (run < 0 || position + run > total) throw new RangeError("RLE runs exceed the mask size");
    if (foreground) {
      // Column-major index i -> (x, y), walking down columns.
      let x = Math.floor(position / height);
      let y = position - x * height;
      for (let n = 0; n < run; n++) {
        bitmap[y * width + x] = 1;
        if (++y === height) {
          y = 0;
          x++;
        }
      }
    }
    position += run;
    foreground = !foreground;
  }
  if (position !== total && total > 0 && rle.counts.length > 0) {
    throw new RangeError(`RLE runs cover ${position} of ${total} pixels`);
  }
  return bitmap;
}

/** Encodes a row-major 0/1 bitmap as a COCO RLE (the inverse of `decodeRle`). */
export function encodeRle(bitmap: Uint8Array, width: number, height: number): Rle {
  if (bitmap.length !== width * height) {
    throw new RangeError(`bitmap has ${bitmap.length} values for ${width}x${height}`);
  }
  const runs: number[] = [];
  let value = 0;
  let run = 0;
  for (let x = 0; x < width; x++) {
    for (let y = 0; y < height; y++) {
      const v = bitmap[y * width + x] ? 1 : 0;
      if (v !== value) {
        runs.push(run);
        run = 0;
        value = v;
      }
      run++;
    }
  }
  runs.push(run);
  return { size: [height, width], counts: encodeCounts(runs) };
}
