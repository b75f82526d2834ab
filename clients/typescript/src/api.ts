// Everything both entries (node.ts, web.ts) export besides `createClient`.
export {
  MobilesamClient,
  Session,
  Generation,
  baseUrlOf,
  type ClientOptions,
  type EmbeddingSourceName,
  type Frame,
  type GenerateOptions,
  type GenerateSummary,
  type GeneratedMask,
  type ImageInput,
  type ModelInfo,
  type ObjectResult,
  type PredictOptions,
  type Prediction,
  type SessionSource,
  type TrackStateName,
} from "./client.js";
export { ArgumentError, Code, MobilesamError, Superseded, codeName } from "./errors.js";
export { Mask, type ImageDataOptions, type Polygon, type Rgba } from "./masks.js";
export { decodeCounts, decodeRle, encodeCounts, encodeRle, type Rle } from "./rle.js";
export { parsePrompt, type Boxes, type Labels, type Points, type XY } from "./prompts.js";
