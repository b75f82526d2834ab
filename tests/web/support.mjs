// What the page's Chromium tests share: the paths, starting `mobilesam serve`, the browser,
// a clip recorded in the browser, reading masks and the server's metrics.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const root = resolve(here, "../..");
export const bin = process.env.MOBILESAM_BIN ?? join(root, "target/debug/mobilesam");
export const checkpoint =
  process.env.MOBILESAM_TEST_CHECKPOINT ?? join(root, "target/test-weights/seeded.safetensors");
export const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
export const artifacts = join(root, "target/web-artifacts");
export const fixture = join(root, "tests/fixtures/images/chelsea.png");
/** The reduced SAM 2.1 test model (family "sam2.1_hiera"): a server starts in seconds. */
export const sam2Checkpoint = join(root, "tests/fixtures/sam2/sam2.1_hiera_r_seed0.pt");
export const TIMEOUT = 180_000;
/** The recorded clip's frame size. */
export const CLIP_WIDTH = 320;
export const CLIP_HEIGHT = 240;

/** Starts `mobilesam serve` (on `options.checkpoint`, by default the seeded MobileSAM
 * weights) and resolves with `{ child, addr, metricsAddr }` once it is serving. */
export function startServer(extra = [], extraEnv = {}, options = {}) {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !key.startsWith("MOBILESAM_")),
  );
  const child = spawn(
    bin,
    [
      "serve",
      "--checkpoint", options.checkpoint ?? checkpoint,
      "--addr", "127.0.0.1:0",
      "--metrics-addr", "127.0.0.1:0",
      "--workers", "1",
      "--log-format", "json",
      ...extra,
    ],
    { env: { ...env, ...extraEnv, RUST_LOG: "info" }, stdio: ["ignore", "ignore", "pipe"] },
  );
  const logs = [];
  return new Promise((resolvePromise, reject) => {
    let addr = null;
    let metricsAddr = null;
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${logs.join("\n")}`)), TIMEOUT);
    child.on("exit", (code) => reject(new Error(`server exited with ${code}:\n${logs.join("\n")}`)));
    createInterface({ input: child.stderr }).on("line", (line) => {
      logs.push(line);
      let json;
      try {
        json = JSON.parse(line);
      } catch {
        return;
      }
      const message = json.fields?.message ?? "";
      if (message.startsWith("gRPC") && json.fields.addr) addr = json.fields.addr;
      if (message.startsWith("metrics") && json.fields.addr) metricsAddr = json.fields.addr;
      if (message === "serving" && addr) {
        clearTimeout(timer);
        resolvePromise({ child, addr, metricsAddr });
      }
    });
  });
}

/** The value of the Prometheus sample `name` (with its labels, e.g.
 * `mobilesam_requests_total{kind="prefetch",code="OK"}`) on the server's /metrics; 0 when
 * absent. Labels are matched in any order. */
export async function metric(server, name) {
  const text = await (await fetch(`http://${server.metricsAddr}/metrics`)).text();
  const [wantedName, wantedLabels = ""] = name.replace(/}$/, "").split("{");
  const wanted = new Set(wantedLabels.split(",").filter(Boolean));
  for (const line of text.split("\n")) {
    const match = line.match(/^([a-z_:]+)(?:\{(.*)\})? ([0-9.eE+-]+|NaN)$/);
    if (!match || match[1] !== wantedName) continue;
    const labels = new Set((match[2] ?? "").split(",").filter(Boolean));
    if (labels.size === wanted.size && [...wanted].every((l) => labels.has(l))) return Number(match[3]);
  }
  return 0;
}

/** Headless Chromium, no sandbox (CI runs as root), no background traffic (the network is
 * closed). */
export function launchBrowser() {
  return chromium.launch({
    executablePath: chromiumPath,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-dev-shm-usage",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** pycocotools' compressed counts string -> row-major 0/1 mask (an independent decoder). */
export function decodeRle(size, counts) {
  const [h, w] = size;
  const runs = [];
  let p = 0;
  while (p < counts.length) {
    let x = 0;
    let k = 0;
    let more = true;
    while (more) {
      const c = counts.charCodeAt(p) - 48;
      x += (c & 0x1f) * 2 ** (5 * k);
      more = (c & 0x20) !== 0;
      p++;
      k++;
      if (!more && (c & 0x10)) x -= 2 ** (5 * k);
    }
    if (runs.length > 2) x += runs[runs.length - 2];
    runs.push(x);
  }
  const mask = new Uint8Array(w * h);
  let i = 0;
  runs.forEach((run, index) => {
    for (let j = 0; j < run; j++, i++) {
      if (index % 2 === 1) mask[(i % h) * w + Math.floor(i / h)] = 1;
    }
  });
  assert.equal(i, w * h, "RLE runs cover the image");
  return mask;
}

/** The overlay canvas as 0/1 per pixel (alpha > 0). */
export async function overlayMask(page) {
  const alpha = await page.evaluate(() => {
    const canvas = document.getElementById("overlay-canvas");
    const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    const out = [];
    for (let i = 3; i < data.length; i += 4) out.push(data[i] > 0 ? 1 : 0);
    return out;
  });
  return Uint8Array.from(alpha);
}

export function mismatches(a, b) {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}

/** Clicks `button` and saves the download it starts into the artefacts as `name`. */
export async function download(page, button, name) {
  const [file] = await Promise.all([page.waitForEvent("download"), page.click(button)]);
  const path = join(artifacts, name);
  await file.saveAs(path);
  return readFileSync(path, "utf8");
}

/** Clicks `button` and collects the downloads it starts (one per file), waiting up to 10 s
 * for `count` of them. */
export async function downloads(page, button, count) {
  const files = [];
  const listener = (file) => files.push(file);
  page.on("download", listener);
  await page.click(button);
  for (let i = 0; i < 100 && files.length < count; i++) await new Promise((r) => setTimeout(r, 100));
  page.off("download", listener);
  return files;
}

/** A short WebM recorded in the browser: the fixture sliding right, 10 frames per second. */
export async function recordClip(page) {
  const png = readFileSync(fixture).toString("base64");
  const base64 = await page.evaluate(async ({ png, width, height }) => {
    const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
    const image = await createImageBitmap(new Blob([bytes], { type: "image/png" }));
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    const context = canvas.getContext("2d");
    const recorder = new MediaRecorder(canvas.captureStream(10), { mimeType: "video/webm;codecs=vp8" });
    const chunks = [];
    recorder.ondataavailable = (e) => chunks.push(e.data);
    const stopped = new Promise((resolve) => (recorder.onstop = resolve));
    context.drawImage(image, 0, 0);
    recorder.start();
    for (let frame = 0; frame < 15; frame++) {
      context.drawImage(image, -frame * 4, 0);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    recorder.stop();
    await stopped;
    const buffer = new Uint8Array(await new Blob(chunks).arrayBuffer());
    let text = "";
    for (const b of buffer) text += String.fromCharCode(b);
    return btoa(text);
  }, { png, width: CLIP_WIDTH, height: CLIP_HEIGHT });
  return Buffer.from(base64, "base64");
}

/** Waits until the page has a session and is idle (no call in flight, no playback). */
export async function idle(page) {
  await page.waitForFunction(
    () => document.body.dataset.sessionId && document.body.dataset.busy === "0" && document.body.dataset.tracking !== "1",
    null,
    { timeout: 10 * TIMEOUT },
  );
}

/** Clicks at clip pixel (x, y) and waits for the prediction. */
export async function clickClip(page, x, y) {
  const before = Number(await page.getAttribute("body", "data-predictions"));
  const box = await page.locator("#prompt-canvas").boundingBox();
  await page.mouse.click(box.x + (x * box.width) / CLIP_WIDTH, box.y + (y * box.height) / CLIP_HEIGHT);
  await page.waitForFunction(
    (n) => Number(document.body.dataset.predictions) > n && document.body.dataset.busy === "0",
    before,
    { timeout: TIMEOUT },
  );
}
