// Prompt arguments, nested as the CLI's --points/--labels/--bboxes (Ultralytics'
// SAM.predict): checked here, before anything is sent, with errors that name the argument
// and the position.
import { ArgumentError } from "./errors.js";

/** One point `[x, y]` in image pixels. */
export type XY = readonly [number, number] | readonly number[];
/** Points: `[x, y]` (one object, one point), `[[x, y], ...]` (one object per point) or
 * `[[[x, y], ...], ...]` (several points per object). */
export type Points = XY | readonly XY[] | readonly (readonly XY[])[];
/** Labels nested like the points without the coordinate level: `1` or `[1]`, `[1, 0]`,
 * `[[1, 0], ...]`; 1 foreground, 0 background; omitted, every point is foreground. */
export type Labels = number | readonly number[] | readonly (readonly number[])[];
/** Boxes `[x1, y1, x2, y2]` (one object) or a list of them, in image pixels. */
export type Boxes = readonly number[] | readonly (readonly number[])[];

/** One object's prompt, checked. */
export interface ObjectPromptSpec {
  points: { x: number; y: number; label: number }[];
  box?: { x1: number; y1: number; x2: number; y2: number };
}

const POINT_FORMS = "[x, y], [[x, y], ...] or [[[x, y], ...], ...]";
const BOX_FORMS = "[x1, y1, x2, y2] or [[x1, y1, x2, y2], ...]";

/** How many lists deep `v` nests (the deepest branch); 0 for a scalar. */
function depth(v: unknown): number {
  if (!isList(v)) return 0;
  let deepest = 0;
  for (const item of v) deepest = Math.max(deepest, depth(item));
  return 1 + deepest;
}

function isList(v: unknown): v is readonly unknown[] {
  return Array.isArray(v) || ArrayBuffer.isView(v);
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (v === undefined) return "undefined";
  if (typeof v === "string") return `string ${JSON.stringify(v.slice(0, 40))}`;
  if (typeof v === "number") return `number ${v}`;
  if (isList(v)) return `a list of ${v.length} values`;
  return typeof v === "object" ? "an object" : `${typeof v} ${String(v)}`;
}

function list(v: unknown, path: string): readonly unknown[] {
  if (!isList(v)) throw new ArgumentError(`${path}: expected a list, found ${describe(v)}`);
  return v;
}

function number(v: unknown, path: string): number {
  if (typeof v !== "number" && typeof v !== "bigint") {
    throw new ArgumentError(`${path}: expected a number, found ${describe(v)}`);
  }
  const x = Number(v);
  if (!Number.isFinite(x)) throw new ArgumentError(`${path}: expected a finite number, found ${x}`);
  return x;
}

function numbers(v: unknown, n: number, path: string, form: string): number[] {
  const items = list(v, path);
  if (items.length !== n) {
    throw new ArgumentError(`${path}: expected ${form}, found a list of ${items.length} values`);
  }
  return items.map((item, i) => number(item, `${path}[${i}]`));
}

function label(v: unknown, path: string): number {
  if ((typeof v === "number" || typeof v === "bigint") && (Number(v) === 0 || Number(v) === 1)) {
    return Number(v);
  }
  if (typeof v === "boolean") return v ? 1 : 0;
  throw new ArgumentError(`${path}: expected a label 1 (foreground) or 0 (background), found ${describe(v)}`);
}

/** The `[x, y]` pairs of each object, by the nesting depth of `points`. */
function pointCoords(points: unknown): number[][][] {
  const items = list(points, "points");
  if (items.length === 0) throw new ArgumentError(`points is empty; expected ${POINT_FORMS}`);
  const d = depth(points);
  if (d === 1) return [[numbers(points, 2, "points", "[x, y]")]];
  if (d === 2) return items.map((p, i) => [numbers(p, 2, `points[${i}]`, "[x, y]")]);
  if (d === 3) {
    return items.map((object, i) => {
      const path = `points[${i}]`;
      const pts = list(object, path);
      if (pts.length === 0) throw new ArgumentError(`${path} is empty: an object needs at least one point`);
      return pts.map((p, j) => numbers(p, 2, `${path}[${j}]`, "[x, y]"));
    });
  }
  throw new ArgumentError(`points nests ${d} lists deep; expected ${POINT_FORMS}`);
}

/** Labels shaped like `coords`, from `labels` nested one level less than `points`. */
function pointLabels(labels: unknown, nesting: number, coords: number[][][]): number[][] {
  if (nesting === 1) {
    let value = labels;
    if (isList(labels)) {
      if (labels.length !== 1) {
        throw new ArgumentError(
          `points is one point [x, y], so labels must be one label like [1], found ${labels.length} labels`,
        );
      }
      value = labels[0];
    }
    return [[label(value, "labels[0]")]];
  }
  const items = list(labels, "labels");
  if (nesting === 2) {
    if (depth(labels) !== 1 || items.length !== coords.length) {
      throw new ArgumentError(
        `points is a list of ${coords.length} points (one object each), so labels must be a flat list of ${coords.length} labels like [1, 0]`,
      );
    }
    return items.map((v, i) => [label(v, `labels[${i}]`)]);
  }
  if (items.length !== coords.length) {
    throw new ArgumentError(
      `points has ${coords.length} objects but labels has ${items.length} entries; give one list of labels per object, like [[1, 0], [1]]`,
    );
  }
  return items.map((object, i) => {
    const path = `labels[${i}]`;
    const values = list(object, path);
    if (values.length !== coords[i].length) {
      throw new ArgumentError(`${path} has ${values.length} labels for ${coords[i].length} points`);
    }
    return values.map((v, j) => label(v, `${path}[${j}]`));
  });
}

function parseBoxes(boxes: unknown): { x1: number; y1: number; x2: number; y2: number }[] {
  const items = list(boxes, "boxes");
  if (items.length === 0) throw new ArgumentError(`boxes is empty; expected ${BOX_FORMS}`);
  const one = (v: unknown, path: string) => {
    const [x1, y1, x2, y2] = numbers(v, 4, path, "[x1, y1, x2, y2]");
    if (x2 <= x1 || y2 <= y1) {
      throw new ArgumentError(`${path}: box [${x1}, ${y1}, ${x2}, ${y2}] must have x2 > x1 and y2 > y1`);
    }
    return { x1, y1, x2, y2 };
  };
  const d = depth(boxes);
  if (d === 1) return [one(boxes, "boxes")];
  if (d === 2) return items.map((b, i) => one(b, `boxes[${i}]`));
  throw new ArgumentError(`boxes nests ${d} lists deep; expected ${BOX_FORMS}`);
}

/** The objects of a prompt, in order, from `points`, `labels` and `boxes` nested as the CLI
 * takes them; points and boxes together pair up object by object. */
export function parsePrompt(points?: unknown, labels?: unknown, boxes?: unknown): ObjectPromptSpec[] {
  let pointObjects: ObjectPromptSpec["points"][] | undefined;
  if (points !== undefined && points !== null) {
    const coords = pointCoords(points);
    const labelled =
      labels === undefined || labels === null
        ? coords.map((object) => object.map(() => 1))
        : pointLabels(labels, depth(points), coords);
    pointObjects = coords.map((object, i) =>
      object.map(([x, y], j) => ({ x: Math.fround(x), y: Math.fround(y), label: labelled[i][j] })),
    );
  } else if (labels !== undefined && labels !== null) {
    throw new ArgumentError("labels needs points");
  }
  const parsedBoxes = boxes === undefined || boxes === null ? undefined : parseBoxes(boxes);
  if (pointObjects && parsedBoxes) {
    if (pointObjects.length !== parsedBoxes.length) {
      throw new ArgumentError(
        `points gives ${pointObjects.length} object(s) but boxes gives ${parsedBoxes.length} box(es); points and boxes pair up object by object, so the counts must match`,
      );
    }
    return pointObjects.map((pts, i) => ({ points: pts, box: parsedBoxes[i] }));
  }
  if (pointObjects) return pointObjects.map((pts) => ({ points: pts }));
  if (parsedBoxes) return parsedBoxes.map((box) => ({ points: [], box }));
  throw new ArgumentError("no prompt: give points and/or boxes");
}

/** Object ids for `count` objects: nonzero (with `track`), distinct, integers below 2^64. */
export function parseObjectIds(ids: unknown, count: number, track: boolean): bigint[] | undefined {
  if (ids === undefined || ids === null) {
    if (track) {
      throw new ArgumentError(`track needs objectIds: one nonzero id per object (${count} object(s))`);
    }
    return undefined;
  }
  const items = list(ids, "objectIds");
  if (items.length !== count) {
    throw new ArgumentError(`objectIds has ${items.length} ids for ${count} object(s); give one id per object`);
  }
  const seen = new Set<bigint>();
  return items.map((v, i) => {
    const path = `objectIds[${i}]`;
    let id: bigint;
    if (typeof v === "bigint") id = v;
    else if (typeof v === "number" && Number.isSafeInteger(v)) id = BigInt(v);
    else throw new ArgumentError(`${path}: expected an integer id, found ${describe(v)}`);
    if (id < 0n || id >= 1n << 64n) throw new ArgumentError(`${path}: ${id} is not an unsigned 64-bit id`);
    if (track && id === 0n) throw new ArgumentError(`${path}: track needs nonzero object ids`);
    if (id !== 0n && seen.has(id)) throw new ArgumentError(`${path}: object id ${id} appears twice`);
    seen.add(id);
    return id;
  });
}
