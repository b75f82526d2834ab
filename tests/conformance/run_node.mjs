#!/usr/bin/env node
// The Node runner of the cross-client conformance suite (README.md in this directory):
//
//   node tests/conformance/run_node.mjs SCENARIO --server HOST:PORT --out RESULTS.json
//
// It runs every step of the scenario with @mobilesam/client (clients/typescript, built with
// `npm ci && npm run build` there first when its dist/ is missing) over HTTP/2 gRPC and writes the results file the other
// runners write. The package speaks the unary session RPCs (SetImage, Predict,
// GenerateMasks), which share the server's sessions, queues and supersede rule with the
// Segment stream: a scenario session is a server session id, `close` forgets it (as ending a
// stream does; the embedding stays cached), and a `pipeline` sends its prompts in order
// without waiting for answers.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const packageDir = resolve(here, "../../clients/typescript");

function usage(message) {
  process.stderr.write(`${message}\nusage: node run_node.mjs SCENARIO --server HOST:PORT --out RESULTS.json\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const args = { scenario: null, server: null, out: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--server" || a === "--out") {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      args[a.slice(2)] = argv[++i];
    } else if (a.startsWith("--server=")) args.server = a.slice(9);
    else if (a.startsWith("--out=")) args.out = a.slice(6);
    else if (a.startsWith("--")) usage(`unknown flag ${a}`);
    else if (args.scenario === null) args.scenario = a;
    else usage(`unexpected argument ${a}`);
  }
  if (!args.scenario || !args.server || !args.out) usage("SCENARIO, --server and --out are required");
  return args;
}

/** A float32 as 8 lowercase hex digits of its bits. */
function f32(v) {
  const view = new DataView(new ArrayBuffer(4));
  view.setFloat32(0, v);
  return view.getUint32(0).toString(16).padStart(8, "0");
}

const STATES = {
  none: "TRACK_STATE_UNSPECIFIED",
  tracked: "TRACK_STATE_TRACKED",
  lost: "TRACK_STATE_LOST",
  occluded: "TRACK_STATE_OCCLUDED",
};

function maskResult(mask) {
  return {
    score: f32(mask.score),
    stability_score: f32(mask.stabilityScore),
    area: mask.area,
    bbox: mask.bbox.map(f32),
    rle: { size: [...mask.rle.size], counts: mask.rle.counts },
    polygons: mask.polygons.map((p) => ({ hole: p.hole, points: p.points.map(f32) })),
  };
}

function objectResult(object) {
  return { object_id: object.objectId, state: STATES[object.state], masks: object.masks.map(maskResult) };
}

function imageReadyResult(frame) {
  return {
    width: frame.width,
    height: frame.height,
    frame_index: frame.frameIndex,
    prefetched: frame.prefetched,
    image_sha256: frame.imageSha256,
    tracked: frame.tracked.map(objectResult),
  };
}

function masksResult(prediction) {
  return { objects: prediction.objects.map(objectResult) };
}

/** `points_per_side` -> `pointsPerSide`. */
const camel = (name) => name.replace(/_([a-z])/g, (_, c) => c.toUpperCase());

function predictOptions(step) {
  const options = {};
  for (const key of ["points", "labels", "boxes"]) if (step[key] !== undefined) options[key] = step[key];
  if (step.multimask) options.multimask = true;
  if (step.polygons) options.polygons = true;
  if (step.track) options.track = true;
  if (step.object_ids !== undefined) options.objectIds = step.object_ids;
  if (step.supersede) options.supersede = true;
  return options;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const args = parseArgs(process.argv.slice(2));
  let pkg;
  if (!existsSync(resolve(packageDir, "dist/node.js"))) {
    // A fresh checkout: build the package first (npm ci, buf generate, tsc).
    process.stderr.write(`building @mobilesam/client in ${packageDir}\n`);
    const npm = (...a) => execFileSync("npm", a, { cwd: packageDir, stdio: ["ignore", process.stderr, process.stderr] });
    npm("ci", "--no-audit", "--no-fund", "--loglevel=error");
    npm("run", "build");
  }
  try {
    pkg = await import(pathToFileURL(resolve(packageDir, "dist/node.js")).href);
  } catch (error) {
    process.stderr.write(`cannot load @mobilesam/client from ${packageDir}/dist (run npm ci && npm run build there): ${error.message}\n`);
    process.exit(1);
  }
  const { createClient, MobilesamError } = pkg;
  const version = JSON.parse(readFileSync(resolve(packageDir, "package.json"), "utf8")).version;
  const scenarioPath = resolve(args.scenario);
  const scenario = JSON.parse(readFileSync(scenarioPath, "utf8"));
  const base = dirname(scenarioPath);

  const image = (spec) => {
    const bytes = new Uint8Array(readFileSync(resolve(base, spec.path)));
    return spec.truncate === undefined ? bytes : bytes.slice(0, spec.truncate);
  };
  const failure = (error) =>
    error instanceof MobilesamError
      ? { error: error.codeName, message: error.rawMessage }
      : { error: "CLIENT_ERROR", message: String(error?.stack ?? error) };

  const client = createClient(args.server, { retries: 8 }); // the model may still be loading
  /** Scenario session name -> Session. */
  const sessions = new Map();
  const session = (name) => {
    const s = sessions.get(name);
    if (!s) throw new Error(`no open session named ${JSON.stringify(name)}`);
    return s;
  };

  const ops = {
    async model_info() {
      const info = await client.modelInfo();
      return {
        name: info.name,
        family: info.family,
        image_size: info.imageSize,
        memory_tracking: info.memoryTracking,
        parameters: info.parameters,
        checkpoint_bytes: info.checkpointBytes,
        device: info.device,
      };
    },
    async open(step) {
      const given = ["image", "resume", "session_id"].filter((k) => step[k] !== undefined);
      if (given.length !== 1) throw new Error(`open needs exactly one of image, resume, session_id (found ${given.join(", ") || "none"})`);
      let source;
      if (step.image !== undefined) source = image(step.image);
      else if (step.resume !== undefined) source = { sessionId: session(step.resume).id };
      else source = { sessionId: step.session_id };
      const opened = await client.openSession(source, { frameIndex: step.frame_index });
      sessions.set(step.session, opened);
      return imageReadyResult(opened.ready);
    },
    async predict(step) {
      return masksResult(await session(step.session).predict(predictOptions(step)));
    },
    async set_image(step) {
      return imageReadyResult(await session(step.session).setImage(image(step.image), { frameIndex: step.frame_index }));
    },
    async prefetch(step) {
      const s = session(step.session);
      const answers = await Promise.allSettled(step.images.map((spec) => s.prefetch([image(spec)])));
      return {
        images: answers.map((a) => (a.status === "fulfilled" ? imageReadyResult(a.value[0]) : { error: failure(a.reason).error })),
      };
    },
    async generate(step) {
      const params = Object.fromEntries(Object.entries(step.params ?? {}).map(([k, v]) => [camel(k), v]));
      const generation = session(step.session).generate(params);
      const masks = [];
      for await (const g of generation) {
        masks.push({
          mask: maskResult(g.mask),
          stability_score: f32(g.stabilityScore),
          point: { x: f32(g.point.x), y: f32(g.point.y), label: g.point.label },
          crop_box: g.cropBox.map(f32),
        });
      }
      const summary = generation.summary;
      if (!summary) throw new Error("the generation ended without a summary");
      return { masks, summary: { mask_count: summary.maskCount, width: summary.width, height: summary.height } };
    },
    async pipeline(step) {
      const s = session(step.session);
      const pending = [];
      for (const [i, prompt] of step.prompts.entries()) {
        if (prompt.delay_ms) await sleep(prompt.delay_ms);
        // Unary calls travel on their own HTTP/2 streams: a moment between sends keeps their
        // arrival in prompt order, as one stream's would be.
        else if (i > 0) await sleep(20);
        const answer = s.predict(predictOptions(prompt));
        answer.catch(() => undefined); // read below, after every prompt is sent
        pending.push(answer);
      }
      const answers = await Promise.allSettled(pending);
      return {
        answers: answers.map((a) => (a.status === "fulfilled" ? masksResult(a.value) : { error: failure(a.reason).error })),
      };
    },
    async close(step) {
      session(step.session);
      sessions.delete(step.session);
      return {};
    },
  };

  const steps = [];
  for (const step of scenario.steps) {
    const op = ops[step.op];
    try {
      if (!op) throw new Error(`unknown op ${JSON.stringify(step.op)}`);
      steps.push({ name: step.name, op: step.op, result: await op(step) });
    } catch (error) {
      steps.push({ name: step.name, op: step.op, ...failure(error) });
    }
  }
  client.close();
  const results = {
    format: "mobilesam-conformance-results/1",
    client: "node",
    client_version: version,
    scenario: basename(scenarioPath),
    steps,
  };
  writeFileSync(args.out, JSON.stringify(results, null, 1) + "\n");
}

main().catch((error) => {
  process.stderr.write(`${error?.stack ?? error}\n`);
  process.exit(1);
});
