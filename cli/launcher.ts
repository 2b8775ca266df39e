/**
 * Starts flare roles as child processes and waits until each says it is serving (its "... started"
 * log line names its ports). Used by `flare cluster` and the benchmarks.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createWriteStream } from "node:fs";
import { fileURLToPath } from "node:url";

const CLI = fileURLToPath(new URL("./main.js", import.meta.url));

/**
 * V8's young generation grows to 3 × 16 MiB under a steady stream of short-lived request objects:
 * about 30 MB of RSS that buys no speed here (measured: the same ops/s one in flight and batched
 * with 4 MiB). bin/flare's shebang sets the same; NODE_OPTIONS can still choose another size.
 */
export const V8_FLAGS = /max-semi-space-size/.test(process.env.NODE_OPTIONS ?? "")
  ? []
  : ["--max-semi-space-size=4"];

/**
 * A proxy's heap is small and short-lived (requests in flight, the node map): V8's helper threads
 * for parallel and concurrent collection cost it more than they save. One request in flight per
 * connection, on two cores, the proxy used about 4% less CPU per request and served 5% more
 * requests without them (mean of 13 turns back to back; see the README). Nodes keep them: their
 * heap can be large (LevelDB's caches, millions of items' index), and one in flight they ran the
 * same either way. V8 takes this flag only on the command line (not NODE_OPTIONS, not at run time).
 */
const ROLE_FLAGS: Record<"index" | "node" | "proxy", string[]> = {
  index: [],
  node: [],
  proxy: ["--single-threaded-gc"],
};

/**
 * glibc raises its mmap threshold (up to 32 MiB) each time a large block is freed, such as the
 * memory engine's typed arrays when they grow; from then on its 1 MiB pages come from the heap,
 * and up to twice that threshold of freed memory stays in the process. A fixed threshold keeps
 * large blocks in mmap, given back when freed: 5 M items under `memory-limit 256m` hold 320 MiB
 * of RSS instead of 358. bin/flare's shebang sets the same.
 */
export const MALLOC_ENV: Record<string, string> =
  process.env.MALLOC_MMAP_THRESHOLD_ === undefined ? { MALLOC_MMAP_THRESHOLD_: "131072" } : {};

export interface Proc {
  port: number;
  httpPort: number | undefined;
  pid: number;
  /** Sends `signal` and resolves once the process is gone. */
  kill(signal: NodeJS.Signals): Promise<void>;
}

/**
 * `flare <role> --server-port 0 <args>` (a later `--server-port` in args wins). Its log goes to
 * `logFile` when given, else it is dropped once the process is up.
 */
export async function startRole(
  role: "index" | "node" | "proxy",
  args: string[],
  logFile?: string,
  env: Record<string, string> = {},
): Promise<Proc> {
  const flags = [...V8_FLAGS, ...ROLE_FLAGS[role]];
  const proc = spawn(process.execPath, [...flags, CLI, role, "--server-port", "0", ...args], {
    stdio: ["ignore", "ignore", "pipe"],
    // The "started" line is how readiness is seen: children log at least at info.
    env: {
      ...process.env,
      ...MALLOC_ENV,
      ...env,
      FLARE_LOG: process.env.FLARE_LOG === "debug" ? "debug" : "info",
    },
  });
  const log = logFile === undefined ? undefined : createWriteStream(logFile, { flags: "a" });
  let head = "";
  let ready = false;
  const started = new Promise<{ port: number; httpPort?: number }>((resolve, reject) => {
    proc.stderr?.on("data", (d: Buffer) => {
      log?.write(d);
      if (ready) return;
      head += d.toString();
      const line = head.split("\n").find((l) => l.includes(`"${role} started"`));
      if (line) {
        ready = true;
        head = "";
        resolve(JSON.parse(line) as { port: number; httpPort?: number });
      }
    });
    proc.once("exit", (code) => {
      log?.end();
      if (!ready)
        reject(new Error(`${role} exited with ${code}: ${head.trim().split("\n").slice(-3).join(" | ")}`));
    });
  });
  const { port, httpPort } = await started;
  return {
    port,
    httpPort,
    pid: proc.pid as number,
    async kill(signal) {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = once(proc, "exit");
      proc.kill(signal);
      const timer = setTimeout(() => proc.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
