/** Real child processes of the CLI, started on ephemeral ports and always stopped by pid. */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { stopChild } from "../../harness/servers.js";

const BIN = fileURLToPath(new URL("../../bin/flare", import.meta.url));
const running = new Set<ChildProcess>();
// Last resort when a test file dies before its afterAll: nothing it started outlives it.
process.once("exit", () => {
  for (const p of running) p.kill("SIGKILL");
});

export interface NodeProcess {
  proc: ChildProcess;
  port: number;
  httpPort: number | undefined;
  /** Everything the process wrote to stderr so far. */
  stderr(): string;
  stop(): Promise<void>;
}

/** Runs `flare <args>` to completion; for start-up failures. */
export async function runFlare(
  args: string[],
  timeoutMs = 10_000,
): Promise<{ code: number | null; stderr: string }> {
  const proc = spawn(process.execPath, [BIN, ...args], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, FLARE_LOG: "warn" },
  });
  let stderr = "";
  proc.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const [code] = (await once(proc, "exit")) as [number | null];
  clearTimeout(timer);
  return { code, stderr };
}

/** Starts `flare node --server-port 0 ...` and waits for its "node started" line. */
export function startNodeProcess(args: string[] = []): Promise<NodeProcess> {
  return startRole("node", "node started", args);
}

/** Starts `flare index --server-port 0 ...` and waits for its "index started" line. */
export function startIndexProcess(args: string[] = []): Promise<NodeProcess> {
  return startRole("index", "index started", args);
}

/** `wrap`: a command the role runs under (`ip netns exec NS`: a host of its own); it execs, same pid. */
export async function startRole(
  role: string,
  ready: string,
  args: string[],
  wrap: string[] = [],
): Promise<NodeProcess> {
  const argv = [process.execPath, BIN, role, "--server-port", "0", "--bind-address", "127.0.0.1", ...args];
  const [command, ...rest] = [...wrap, ...argv] as [string, ...string[]];
  const proc = spawn(command, rest, {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, FLARE_LOG: "info" },
  });
  running.add(proc);
  proc.once("exit", () => running.delete(proc));
  let stderr = "";
  const started = await new Promise<{ port: number; httpPort?: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${role} did not start: ${stderr}`)), 20_000);
    proc.stderr?.on("data", (d: Buffer) => {
      stderr += d.toString();
      for (const line of stderr.split("\n")) {
        if (!line.includes(`"${ready}"`)) continue;
        clearTimeout(timer);
        resolve(JSON.parse(line));
        return;
      }
    });
    proc.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${role} exited with ${code}: ${stderr}`));
    });
  });
  return {
    proc,
    port: started.port,
    httpPort: started.httpPort,
    stderr: () => stderr,
    stop: () => stopChild(proc),
  };
}

/** Safety net for a failed test: nothing we started outlives the test file. */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map(stopChild));
}
