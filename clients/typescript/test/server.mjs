// Starts the real `mobilesam serve` for the package's tests: $MOBILESAM_BIN with
// $MOBILESAM_TEST_CHECKPOINT (seeded weights from `mobilesam seeded-checkpoint`) on a
// loopback port, and resolves once it is serving.
import { spawn, execFileSync } from "node:child_process";
import { createInterface } from "node:readline";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const root = resolve(here, "../../..");
export const bin = process.env.MOBILESAM_BIN ?? join(root, "target/debug/mobilesam");
export const checkpoint =
  process.env.MOBILESAM_TEST_CHECKPOINT ?? join(root, "target/test-weights/seeded.safetensors");
export const STARTUP_MS = 180_000;

/** `mobilesam serve` with `extra` flags and `extraEnv`; resolves with { child, addr, stop }. */
export function startServer(extra = [], extraEnv = {}) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("MOBILESAM_")));
  const child = spawn(
    bin,
    [
      "serve",
      "--checkpoint", checkpoint,
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
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${logs.join("\n")}`)), STARTUP_MS);
    child.on("error", (e) => reject(new Error(`cannot start ${bin} (set MOBILESAM_BIN): ${e.message}`)));
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
      if (message === "serving" && addr) {
        clearTimeout(timer);
        child.removeAllListeners("exit");
        resolvePromise({
          child,
          addr,
          logs,
          stop: () =>
            new Promise((done) => {
              if (child.exitCode !== null) return done();
              child.once("exit", () => done());
              child.kill("SIGTERM");
            }),
        });
      }
    });
  });
}

/** `mobilesam segment` for the same prompt: the reference the served masks must equal. */
export function segmentCli(image, args) {
  const out = execFileSync(bin, ["segment", "--checkpoint", checkpoint, "--image", image, ...args], {
    env: { ...process.env, RUST_LOG: "error" },
  });
  return JSON.parse(out.toString());
}
