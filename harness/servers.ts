/** Servers the bench runs: flare-ts nodes and the real programs they are compared with. */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startRole } from "./cluster.js";

/** Linux clock ticks per second for /proc/PID/stat times (getconf CLK_TCK; 100 on Linux). */
const TICKS_PER_SECOND = 100;

export interface BenchServer {
  name: string;
  port: number;
  pid: number;
  /** Every process whose CPU counts for this server (default: pid). */
  pids?: number[];
  stop(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** Whether nothing listens on `host:port` now. */
export function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });
}

/** User + system CPU seconds a process has used so far (from /proc/PID/stat, the steadiest figure here). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** SIGTERM, then SIGKILL after 5 s if it is still there; resolves once it exited. */
export async function stopChild(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = once(proc, "exit");
  proc.kill("SIGTERM");
  const timer = setTimeout(() => proc.kill("SIGKILL"), 5000);
  await exited;
  clearTimeout(timer);
}

export async function startFlareNode(
  name: string,
  args: string[] = [],
  cleanup?: () => Promise<void>,
): Promise<BenchServer> {
  const node = await startRole("node", args);
  return {
    name,
    port: node.port,
    pid: node.pid,
    stop: async () => {
      await node.kill("SIGTERM");
      await cleanup?.();
    },
  };
}

/** memcached with one worker thread and `megabytes` of item memory. */
export async function startMemcached(megabytes = 1024): Promise<BenchServer> {
  const port = await freePort();
  const args = [
    "-t",
    "1",
    "-p",
    String(port),
    "-l",
    "127.0.0.1",
    "-U",
    "0",
    "-m",
    String(megabytes),
    "-u",
    "root",
  ];
  const proc = spawn("memcached", args, { stdio: "ignore" });
  await waitListening(proc, port, "memcached");
  return { name: "memcached -t 1", port, pid: proc.pid as number, stop: () => stopChild(proc) };
}

/** redis-server on loopback `port`, nothing persisted, its files in `dir`; not yet listening. */
export function spawnRedis(port: number, dir: string): ChildProcess {
  const args = [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    dir,
  ];
  return spawn("redis-server", args, { stdio: "ignore" });
}

/** A private redis-server for the redis engine; returns its URL and how to stop it. */
export async function startRedis(): Promise<{ url: string; pid: number; stop: () => Promise<void> }> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "flare-bench-redis-"));
  const proc = spawnRedis(port, dir);
  await waitListening(proc, port, "redis-server");
  return {
    url: `redis://127.0.0.1:${port}`,
    pid: proc.pid as number,
    stop: async () => {
      await stopChild(proc);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** twemproxy (nutcracker) in front of one memcached-protocol server. */
export async function startTwemproxy(
  backendPort: number,
): Promise<{ port: number; pid: number; stop: () => Promise<void> }> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "flare-twemproxy-"));
  const conf = join(dir, "nutcracker.yml");
  writeFileSync(
    conf,
    `pool:\n  listen: 127.0.0.1:${port}\n  hash: fnv1a_64\n  distribution: ketama\n  timeout: 1000\n  server_connections: 2\n  servers:\n   - 127.0.0.1:${backendPort}:1\n`,
  );
  const proc = spawn("nutcracker", ["-c", conf, "-s", String(await freePort())], { stdio: "ignore" });
  await waitListening(proc, port, "nutcracker");
  return {
    port,
    pid: proc.pid as number,
    stop: async () => {
      proc.kill("SIGTERM");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Programs without a readiness line: poll until the port accepts. */
export async function waitListening(proc: ChildProcess, port: number, what: string): Promise<void> {
  proc.once("error", () => {});
  for (let i = 0; i < 100; i++) {
    if (proc.exitCode !== null) throw new Error(`${what} exited at start (is the Debian package installed?)`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ port, host: "127.0.0.1" });
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what} did not start listening`);
}
