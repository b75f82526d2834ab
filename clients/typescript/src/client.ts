// The client: one per server. Sessions hold an image's embedding on the server; prompts
// against a session cost only a decode. Built on the unary session RPCs (SetImage,
// Predict, GenerateMasks, Untrack, CloseSession), which work the same over HTTP/2 gRPC
// (Node) and gRPC-web (browsers) and share the server's session store with the stream.
import {
  Code,
  createClient as createConnectClient,
  type CallOptions,
  type Client,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import {
  SegmentAnything,
  EmbeddingSource,
  TrackState,
  type GenerateParams,
  type ImageReady,
  type Masks,
  type ObjectMasks,
} from "./gen/mobilesam/v1/mobilesam_pb.js";
import { ArgumentError, MobilesamError, Superseded, toMobilesamError } from "./errors.js";
import { Mask } from "./masks.js";
import { parseObjectIds, parsePrompt, type Boxes, type Labels, type Points } from "./prompts.js";

/** An encoded image (JPEG, PNG or WebP): bytes, a Blob/File, or a string (Node: a file
 * path; browsers: a URL to fetch). */
export type ImageInput = Uint8Array | ArrayBuffer | ArrayBufferView | Blob | string;

/** What `openSession` takes: an image, or a way to reach an embedding the server has. */
export type SessionSource =
  | ImageInput
  /** Resume a cached session (NOT_FOUND when the server no longer has it). */
  | { sessionId: string }
  /** Open a session on the embedding of an image the server has seen (NOT_FOUND if not). */
  | { imageSha256: string };

/** Options of `createClient`. */
export interface ClientOptions {
  /** Bearer token of a server started with `--auth-token-file` (sent as `authorization`). */
  token?: string;
  /** `"grpc"` (HTTP/2; Node only, the default there) or `"grpc-web"` (HTTP/1.1 or 2 with
   * fetch; the only one in browsers). */
  transport?: "grpc" | "grpc-web";
  /** Deadline of each call in milliseconds (default: none). */
  timeoutMs?: number;
  /** Retries of opening calls (`openSession`, `modelInfo`) answered UNAVAILABLE (default 4). */
  retries?: number;
  /** First retry delay in milliseconds, doubled on each retry up to 2 s (default 100). */
  retryDelayMs?: number;
  /** Extra request headers. */
  headers?: Record<string, string>;
  /** Node, `https://` URLs over HTTP/2: the CA, client certificate and key (PEM), for
   * private CAs and mutual TLS. */
  tls?: { ca?: string | Uint8Array; cert?: string | Uint8Array; key?: string | Uint8Array };
}

/** The model the server runs. */
export interface ModelInfo {
  name: string;
  parameters: number;
  checkpointBytes: number;
  device: string;
  imageSize: number;
  /** e.g. "mobile_sam", "sam2.1_hiera_t". */
  family: string;
  /** Whether tracking uses SAM 2's memory bank. */
  memoryTracking: boolean;
}

/** Where an image's embedding came from. */
export type EmbeddingSourceName = "encoded" | "local_cache" | "store";
/** A tracked object's state: "none" for an untracked object. */
export type TrackStateName = "none" | "tracked" | "lost" | "occluded";

/** One object's answer. */
export interface ObjectResult {
  /** The id given in `objectIds` (0 when none). */
  objectId: number;
  state: TrackStateName;
  /** One mask, or three with `multimask`; none for a lost or occluded object. */
  masks: Mask[];
  /** The highest-scoring mask (the first of equals), if any. */
  best: Mask | undefined;
}

/** The answer to `predict`. */
export interface Prediction {
  requestId: number;
  /** Server-side decode time. */
  decodeMs: number;
  /** In the order of the prompt's objects. */
  objects: ObjectResult[];
}

/** The answer to `setImage` (and the state after `openSession`). */
export interface Frame {
  sessionId: string;
  width: number;
  height: number;
  /** 0 when a cached embedding was reused. */
  encodeMs: number;
  source: EmbeddingSourceName;
  imageSha256: string;
  frameIndex: number;
  /** The tracked objects followed onto this frame (ascending object id). */
  tracked: ObjectResult[];
  /** Server-side decode time of `tracked` (0 when nothing is tracked). */
  decodeMs: number;
  /** True on the answers of `prefetch` (the embedding is cached; the session's image is
   * unchanged). */
  prefetched: boolean;
}

/** `predict`'s arguments: prompts nested as the CLI's (see `Points`, `Labels`, `Boxes`). */
export interface PredictOptions {
  points?: Points;
  labels?: Labels;
  boxes?: Boxes;
  /** Three candidate masks per object instead of one. */
  multimask?: boolean;
  /** Fill `Mask.polygons`: every region's outline and hole. */
  polygons?: boolean;
  /** Follow the objects on the session's next frames (needs `objectIds`). */
  track?: boolean;
  /** One id per object: required with `track`, echoed in the results. */
  objectIds?: readonly (number | bigint)[];
  /** Latest wins: this session's queued prompts are answered `Superseded`. */
  supersede?: boolean;
  /** Fill `Mask.lowResLogits`, for `maskInputs` of a later prompt. */
  lowResLogits?: boolean;
  /** Per object: a previous mask's low-res logits (a Mask, its bytes, or 65536 floats). */
  maskInputs?: readonly (Mask | Uint8Array | Float32Array | null | undefined)[];
  /** Deadline of this call in milliseconds. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** `generate`'s arguments: the reference's SamAutomaticMaskGenerator parameters (unset:
 * its defaults). */
export interface GenerateOptions {
  pointsPerSide?: number;
  pointsPerBatch?: number;
  predIouThresh?: number;
  stabilityScoreThresh?: number;
  stabilityScoreOffset?: number;
  boxNmsThresh?: number;
  cropNLayers?: number;
  cropNmsThresh?: number;
  cropOverlapRatio?: number;
  cropNPointsDownscaleFactor?: number;
  minMaskRegionArea?: number;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** One mask of `generate`. */
export interface GeneratedMask {
  /** `score` is the predicted IoU. */
  mask: Mask;
  stabilityScore: number;
  /** The grid point that produced it (label 1). */
  point: { x: number; y: number; label: number };
  /** The crop it was found in, `[x1, y1, x2, y2]`. */
  cropBox: [number, number, number, number];
}

/** The summary that ends `generate`. */
export interface GenerateSummary {
  maskCount: number;
  width: number;
  height: number;
  encodeMs: number;
  generateMs: number;
}

/** What a platform entry (node.ts, web.ts) supplies. */
export interface Platform {
  /** A transport for `baseUrl` and a way to release its connections. */
  transport(baseUrl: string, options: ClientOptions, interceptors: Interceptor[]): { transport: Transport; close(): void };
  /** The bytes of a string image (a path in Node, a URL in browsers). */
  readImage(input: string): Promise<Uint8Array>;
}

const SESSION_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const SHA256 = /^[0-9a-f]{64}$/;
const MASK_INPUT_BYTES = 256 * 256 * 4;

/** `host:port` or a URL -> the base URL (`http://` when no scheme is given). */
export function baseUrlOf(url: string): string {
  if (typeof url !== "string" || url.length === 0) throw new ArgumentError("url must be a server address");
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(url) ? url : `http://${url}`;
  let parsed: URL;
  try {
    parsed = new URL(withScheme);
  } catch {
    throw new ArgumentError(`url ${JSON.stringify(url)} is not a server address (http://host:port or host:port)`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new ArgumentError(`url ${JSON.stringify(url)}: the scheme must be http or https`);
  }
  return parsed.href.replace(/\/$/, "");
}

function sourceName(source: EmbeddingSource): EmbeddingSourceName {
  switch (source) {
    case EmbeddingSource.LOCAL_CACHE:
      return "local_cache";
    case EmbeddingSource.STORE:
      return "store";
    default:
      return "encoded";
  }
}

function stateName(state: TrackState): TrackStateName {
  switch (state) {
    case TrackState.TRACKED:
      return "tracked";
    case TrackState.LOST:
      return "lost";
    case TrackState.OCCLUDED:
      return "occluded";
    default:
      return "none";
  }
}

function bestOf(masks: Mask[]): Mask | undefined {
  return masks.reduce<Mask | undefined>((best, m) => (best === undefined || m.score > best.score ? m : best), undefined);
}

function objectResults(objects: readonly ObjectMasks[]): ObjectResult[] {
  return objects.map((o) => {
    const masks = o.masks.map(Mask.fromWire);
    return { objectId: Number(o.objectId), state: stateName(o.state), masks, best: bestOf(masks) };
  });
}

function prediction(masks: Masks): Prediction {
  return { requestId: Number(masks.requestId), decodeMs: masks.decodeMs, objects: objectResults(masks.objects) };
}

function frameOf(ready: ImageReady): Frame {
  return {
    sessionId: ready.sessionId,
    width: ready.width,
    height: ready.height,
    encodeMs: ready.encodeMs,
    source: sourceName(ready.source),
    imageSha256: ready.imageSha256,
    frameIndex: Number(ready.frameIndex),
    tracked: ready.tracked ? objectResults(ready.tracked.objects) : [],
    decodeMs: ready.tracked?.decodeMs ?? 0,
    prefetched: ready.prefetched,
  };
}

function isImageInput(v: unknown): v is ImageInput {
  return (
    typeof v === "string" ||
    v instanceof ArrayBuffer ||
    ArrayBuffer.isView(v) ||
    (typeof Blob !== "undefined" && v instanceof Blob)
  );
}

function checkSessionId(id: unknown, what = "sessionId"): string {
  if (typeof id !== "string" || !SESSION_ID.test(id)) {
    throw new ArgumentError(`${what} must be 1 to 128 characters of A-Z, a-z, 0-9, '-', '_', '.', ':'`);
  }
  return id;
}

function checkFrameIndex(index: unknown): bigint | undefined {
  if (index === undefined) return undefined;
  if (typeof index === "bigint") return index;
  if (typeof index !== "number" || !Number.isSafeInteger(index)) {
    throw new ArgumentError(`frameIndex must be an integer, found ${String(index)}`);
  }
  return BigInt(index);
}

function maskInputBytes(v: Mask | Uint8Array | Float32Array | null | undefined, i: number): Uint8Array {
  if (v === null || v === undefined) return new Uint8Array(0);
  let bytes: Uint8Array;
  if (v instanceof Mask) {
    if (!v.lowResLogits) throw new ArgumentError(`maskInputs[${i}]: the mask has no low-res logits (predict with lowResLogits: true)`);
    bytes = v.lowResLogits;
  } else if (v instanceof Float32Array) {
    bytes = new Uint8Array(v.length * 4);
    const view = new DataView(bytes.buffer);
    v.forEach((x, j) => view.setFloat32(j * 4, x, true));
  } else if (v instanceof Uint8Array) {
    bytes = v;
  } else {
    throw new ArgumentError(`maskInputs[${i}]: expected a Mask, a Float32Array or bytes`);
  }
  if (bytes.length !== MASK_INPUT_BYTES) {
    throw new ArgumentError(`maskInputs[${i}]: expected 256x256 float32 logits (${MASK_INPUT_BYTES} bytes), found ${bytes.length} bytes`);
  }
  return bytes;
}

const GENERATE_INTEGERS = ["pointsPerSide", "pointsPerBatch", "cropNLayers", "cropNPointsDownscaleFactor"] as const;
const GENERATE_FLOATS = [
  "predIouThresh",
  "stabilityScoreThresh",
  "stabilityScoreOffset",
  "boxNmsThresh",
  "cropNmsThresh",
  "cropOverlapRatio",
] as const;

function generateParams(options: GenerateOptions): Partial<GenerateParams> {
  const params: Record<string, number | bigint> = {};
  for (const key of GENERATE_INTEGERS) {
    const v = options[key];
    if (v === undefined) continue;
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new ArgumentError(`${key} must be a non-negative integer, found ${v}`);
    params[key] = v;
  }
  for (const key of GENERATE_FLOATS) {
    const v = options[key];
    if (v === undefined) continue;
    if (typeof v !== "number" || !Number.isFinite(v)) throw new ArgumentError(`${key} must be a finite number, found ${v}`);
    params[key] = v;
  }
  if (options.minMaskRegionArea !== undefined) {
    const v = options.minMaskRegionArea;
    if (!Number.isSafeInteger(v) || v < 0) throw new ArgumentError(`minMaskRegionArea must be a non-negative integer, found ${v}`);
    params.minMaskRegionArea = BigInt(v);
  }
  return params as Partial<GenerateParams>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The masks of `generate`, as they survive the filters; `summary` is set once they are all in. */
export class Generation implements AsyncIterable<GeneratedMask> {
  /** Set when the iteration has finished. */
  summary: GenerateSummary | null = null;
  private started = false;

  constructor(private readonly responses: () => AsyncIterable<import("./gen/mobilesam/v1/mobilesam_pb.js").GenerateMasksResponse>) {}

  async *[Symbol.asyncIterator](): AsyncIterator<GeneratedMask> {
    if (this.started) throw new TypeError("a Generation can be iterated once");
    this.started = true;
    try {
      for await (const response of this.responses()) {
        const r = response.response;
        if (r.case === "mask") {
          const g = r.value;
          yield {
            mask: Mask.fromWire(g.mask!),
            stabilityScore: g.stabilityScore,
            point: { x: g.point?.x ?? 0, y: g.point?.y ?? 0, label: g.point?.label ?? 0 },
            cropBox: [g.cropBox?.x1 ?? 0, g.cropBox?.y1 ?? 0, g.cropBox?.x2 ?? 0, g.cropBox?.y2 ?? 0],
          };
        } else if (r.case === "summary") {
          const s = r.value;
          this.summary = {
            maskCount: s.maskCount,
            width: s.width,
            height: s.height,
            encodeMs: s.encodeMs,
            generateMs: s.generateMs,
          };
        }
      }
    } catch (error) {
      throw toMobilesamError(error);
    }
  }

  /** Every mask, once the server has sent them all. */
  async all(): Promise<GeneratedMask[]> {
    const out: GeneratedMask[] = [];
    for await (const m of this) out.push(m);
    return out;
  }
}

/** A client of one `mobilesam serve`. */
export class MobilesamClient {
  /** The generated connect client, for anything this package does not wrap. */
  readonly rpc: Client<typeof SegmentAnything>;
  readonly baseUrl: string;
  private readonly release: () => void;

  constructor(
    url: string,
    readonly options: ClientOptions,
    private readonly platform: Platform,
  ) {
    this.baseUrl = baseUrlOf(url);
    if (options.token !== undefined && (typeof options.token !== "string" || !/^[\x21-\x7e]+$/.test(options.token))) {
      throw new ArgumentError("token must be printable ASCII without spaces");
    }
    for (const [key, value] of [
      ["timeoutMs", options.timeoutMs],
      ["retries", options.retries],
      ["retryDelayMs", options.retryDelayMs],
    ] as const) {
      if (value !== undefined && (typeof value !== "number" || !(value >= 0) || !Number.isFinite(value))) {
        throw new ArgumentError(`${key} must be a non-negative number, found ${String(value)}`);
      }
    }
    const headers = { ...(options.headers ?? {}) };
    if (options.token) headers.authorization = `Bearer ${options.token}`;
    const interceptors: Interceptor[] =
      Object.keys(headers).length === 0
        ? []
        : [
            (next) => (request) => {
              for (const [key, value] of Object.entries(headers)) request.header.set(key, value);
              return next(request);
            },
          ];
    const { transport, close } = platform.transport(this.baseUrl, options, interceptors);
    this.rpc = createConnectClient(SegmentAnything, transport);
    this.release = close;
  }

  /** Call options from the client's and the call's deadline. */
  callOptions(extra: { timeoutMs?: number; signal?: AbortSignal } = {}): CallOptions {
    const timeoutMs = extra.timeoutMs ?? this.options.timeoutMs;
    return { timeoutMs, signal: extra.signal };
  }

  /** Runs `call`, retrying UNAVAILABLE with exponential backoff. */
  async retrying<T>(call: () => Promise<T>): Promise<T> {
    const retries = this.options.retries ?? 4;
    let delay = this.options.retryDelayMs ?? 100;
    for (let attempt = 0; ; attempt++) {
      try {
        return await call();
      } catch (error) {
        const e = toMobilesamError(error);
        if (e.code !== Code.Unavailable || attempt >= retries) throw e;
        await sleep(delay);
        delay = Math.min(delay * 2, 2000);
      }
    }
  }

  /** The model the server runs. */
  async modelInfo(options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<ModelInfo> {
    const info = await this.retrying(() => this.rpc.getModelInfo({}, this.callOptions(options)));
    return {
      name: info.name,
      parameters: Number(info.parameters),
      checkpointBytes: Number(info.checkpointBytes),
      device: info.device,
      imageSize: info.imageSize,
      family: info.family,
      memoryTracking: info.memoryTracking,
    };
  }

  /** The bytes of an image argument. */
  async imageBytes(image: ImageInput, what = "image"): Promise<Uint8Array> {
    let bytes: Uint8Array;
    if (typeof image === "string") bytes = await this.platform.readImage(image);
    else if (image instanceof Uint8Array) bytes = image;
    else if (image instanceof ArrayBuffer) bytes = new Uint8Array(image);
    else if (ArrayBuffer.isView(image)) bytes = new Uint8Array(image.buffer, image.byteOffset, image.byteLength);
    else if (typeof Blob !== "undefined" && image instanceof Blob) bytes = new Uint8Array(await image.arrayBuffer());
    else throw new ArgumentError(`${what} must be encoded image bytes (Uint8Array, ArrayBuffer, Blob) or a path/URL`);
    if (bytes.length === 0) throw new ArgumentError(`${what} is empty`);
    return bytes;
  }

  /**
   * Opens a session: encodes `source` (an image) once on the server, or resumes a cached
   * session (`{ sessionId }`), or opens one on an embedding the server has
   * (`{ imageSha256 }`). UNAVAILABLE is retried with backoff.
   */
  async openSession(
    source: SessionSource,
    options: { sessionId?: string; frameIndex?: number; timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<Session> {
    const request: { image?: Uint8Array; sessionId?: string; imageSha256?: string; frameIndex?: bigint } = {};
    if (options.sessionId !== undefined) request.sessionId = checkSessionId(options.sessionId);
    request.frameIndex = checkFrameIndex(options.frameIndex);
    if (isImageInput(source)) {
      request.image = await this.imageBytes(source);
    } else if (source && typeof source === "object" && "sessionId" in source) {
      request.sessionId = checkSessionId(source.sessionId);
    } else if (source && typeof source === "object" && "imageSha256" in source) {
      if (typeof source.imageSha256 !== "string" || !SHA256.test(source.imageSha256)) {
        throw new ArgumentError("imageSha256 must be 64 lowercase hex digits");
      }
      request.imageSha256 = source.imageSha256;
    } else {
      throw new ArgumentError("openSession needs an image, { sessionId } or { imageSha256 }");
    }
    const ready = await this.retrying(() => this.rpc.setImage(request, this.callOptions(options)));
    return new Session(this, frameOf(ready));
  }

  /** Segments everything in `image` without keeping a session. */
  generate(image: ImageInput, options: GenerateOptions = {}): Generation {
    const params = generateParams(options);
    return new Generation(() => {
      const self = this;
      return (async function* () {
        const bytes = await self.imageBytes(image);
        yield* self.rpc.generateMasks({ image: bytes, params }, self.callOptions(options));
      })();
    });
  }

  /** Releases the connections (Node's HTTP/2 session). */
  close(): void {
    this.release();
  }
}

/** An image's embedding on the server, prompted as often as needed. */
export class Session {
  /** The server's session id: `client.openSession({ sessionId })` resumes it. */
  readonly id: string;
  width: number;
  height: number;
  encodeMs: number;
  source: EmbeddingSourceName;
  imageSha256: string;
  frameIndex: number;
  private requests = 0;

  constructor(
    readonly client: MobilesamClient,
    /** The server's answer to opening the session. */
    readonly ready: Frame,
  ) {
    this.id = ready.sessionId;
    this.width = ready.width;
    this.height = ready.height;
    this.encodeMs = ready.encodeMs;
    this.source = ready.source;
    this.imageSha256 = ready.imageSha256;
    this.frameIndex = ready.frameIndex;
  }

  /** Masks for the prompted objects. ABORTED (a newer `supersede` prompt replaced this one
   * before it ran) throws `Superseded`; other failures `MobilesamError`. */
  async predict(options: PredictOptions): Promise<Prediction> {
    if (!options || typeof options !== "object") throw new ArgumentError("predict needs { points, labels, boxes, ... }");
    const specs = parsePrompt(options.points, options.labels, options.boxes);
    const track = options.track === true;
    const ids = parseObjectIds(options.objectIds, specs.length, track);
    if (options.maskInputs !== undefined && options.maskInputs.length !== specs.length) {
      throw new ArgumentError(`maskInputs has ${options.maskInputs.length} entries for ${specs.length} object(s)`);
    }
    const requestId = ++this.requests;
    const objects = specs.map((spec, i) => ({
      points: spec.points,
      box: spec.box,
      objectId: ids?.[i] ?? 0n,
      maskInput: maskInputBytes(options.maskInputs?.[i], i),
    }));
    try {
      const masks = await this.client.rpc.predict(
        {
          sessionId: this.id,
          prompt: {
            requestId: BigInt(requestId),
            objects,
            multimaskOutput: options.multimask === true,
            returnLowResLogits: options.lowResLogits === true,
            supersedePending: options.supersede === true,
            track,
            returnPolygons: options.polygons === true,
          },
        },
        this.client.callOptions(options),
      );
      return prediction(masks);
    } catch (error) {
      throw toMobilesamError(error, true);
    }
  }

  /** The session's next image (a video frame): objects tracked with `track` are followed onto
   * it (`Frame.tracked`). `{ imageSha256 }` uses an embedding already on the server (after
   * `prefetch`). `frameIndex`: the frame's position in the clip (default: the next). */
  async setImage(
    frame: ImageInput | { imageSha256: string },
    options: { frameIndex?: number; timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<Frame> {
    const request: { sessionId: string; image?: Uint8Array; imageSha256?: string; frameIndex?: bigint } = {
      sessionId: this.id,
      frameIndex: checkFrameIndex(options.frameIndex),
    };
    if (isImageInput(frame)) request.image = await this.client.imageBytes(frame, "frame");
    else if (frame && typeof frame === "object" && typeof frame.imageSha256 === "string" && SHA256.test(frame.imageSha256)) {
      request.imageSha256 = frame.imageSha256;
    } else throw new ArgumentError("setImage needs image bytes or { imageSha256 } (64 lowercase hex digits)");
    let ready: ImageReady;
    try {
      ready = await this.client.rpc.setImage(request, this.client.callOptions(options));
    } catch (error) {
      throw toMobilesamError(error);
    }
    const result = frameOf(ready);
    this.width = result.width;
    this.height = result.height;
    this.encodeMs = result.encodeMs;
    this.source = result.source;
    this.imageSha256 = result.imageSha256;
    this.frameIndex = result.frameIndex;
    return result;
  }

  /** Encodes `frames` in the background on the server (the lowest priority), without changing
   * this session's image, so that a later `setImage` of any of them costs no encode.
   * Resolves when every frame is cached, with their answers in the order given (each with
   * `prefetched` true and the frame's `imageSha256`, for `setImage({ imageSha256 })`). */
  async prefetch(
    frames: ImageInput | readonly ImageInput[],
    options: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<Frame[]> {
    const list = Array.isArray(frames) ? (frames as readonly ImageInput[]) : [frames as ImageInput];
    const images = await Promise.all(list.map((f, i) => this.client.imageBytes(f, `frames[${i}]`)));
    try {
      return await Promise.all(
        images.map(async (image) => {
          const ready = await this.client.rpc.setImage(
            { sessionId: this.id, image, prefetch: true },
            this.client.callOptions(options),
          );
          return frameOf(ready);
        }),
      );
    } catch (error) {
      throw toMobilesamError(error);
    }
  }

  /** Segments everything in the session's current image (it stays cached). */
  generate(options: GenerateOptions = {}): Generation {
    const params = generateParams(options);
    return new Generation(() =>
      this.client.rpc.generateMasks({ sessionId: this.id, params }, this.client.callOptions(options)),
    );
  }

  /** Stops following `objectIds` (all objects when omitted); resolves with the ids that were
   * tracked and no longer are. */
  async untrack(objectIds?: readonly (number | bigint)[]): Promise<number[]> {
    const ids = objectIds === undefined ? [] : parseObjectIds(objectIds, objectIds.length, true) ?? [];
    try {
      const answer = await this.client.rpc.untrack(
        { sessionId: this.id, untrack: { objectIds: ids } },
        this.client.callOptions(),
      );
      return answer.objectIds.map(Number);
    } catch (error) {
      throw toMobilesamError(error);
    }
  }

  /** Drops the session's embedding on the server; false when it was already gone. */
  async close(): Promise<boolean> {
    try {
      return (await this.client.rpc.closeSession({ sessionId: this.id }, this.client.callOptions())).closed;
    } catch (error) {
      throw toMobilesamError(error);
    }
  }
}

export { MobilesamError, Superseded };
