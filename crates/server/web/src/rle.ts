// COCO compressed RLE (pycocotools' string form) to a binary mask.

/** A binary mask, row-major: `data[y * width + x]` is 1 for foreground. */
export interface BinaryMask {
  width: number;
  height: number;
  data: Uint8Array;
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
      if (p >= counts.length) throw new Error("truncated RLE counts");
      const c = counts.charCodeAt(p) - 48;
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

/** Decodes a COCO RLE (`size` = [height, width], column-major runs) into a row-major mask. */
export function decodeRle(size: readonly number[], counts: string): BinaryMask {
  const [height, width] = size;
  const data = new Uint8Array(width * height);
  const total = width * height;
  let position = 0;
  let foreground = false;
  for (const run of decodeCounts(counts)) {
    if (run < 0 || position + run > total) throw new Error("RLE runs exceed the mask size");
    if (foreground) {
      for (let i = position; i < position + run; i++) {
        // Column-major index i -> (x, y).
        const x = Math.floor(i / height);
        const y = i - x * height;
        data[y * width + x] = 1;
      }
    }
    position += run;
    foreground = !foreground;
  }
  return { width, height, data };
}
