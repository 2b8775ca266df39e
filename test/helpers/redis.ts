/**
 * A private redis-server per test file: free port, temp dir, stopped by pid. Without redis-server
 * the Redis cases cannot run: under CI that is a failure; elsewhere it is said loudly.
 */
import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, spawnRedis, waitListening } from "../../harness/servers.js";
import { hasCommand } from "./tools.js";

export const redisAvailable = hasCommand("redis-server");

if (!redisAvailable) {
  if (process.env.CI)
    throw new Error(
      "redis-server is missing under CI: .ci/run must install it (apt-get install -y redis-server)",
    );
  console.warn(
    "\n*** redis-server is not installed: the Redis engine cases were NOT run (apt-get install -y redis-server) ***\n",
  );
}

export class RedisServer {
  private proc: ChildProcess | undefined;
  private readonly dir = mkdtempSync(join(tmpdir(), "flare-redis-"));

  private constructor(readonly port: number) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  static async start(port?: number): Promise<RedisServer> {
    const server = new RedisServer(port ?? (await freePort()));
    await server.restart();
    return server;
  }

  /** Starts (again) on the same port. */
  async restart(): Promise<void> {
    const proc = spawnRedis(this.port, this.dir);
    this.proc = proc;
    await waitListening(proc, this.port, "redis-server");
  }

  /** SIGSTOP / SIGCONT: a Redis that freezes (and thaws) with its connections open. */
  signal(signal: "SIGSTOP" | "SIGCONT"): void {
    this.proc?.kill(signal);
  }

  /** kill -9: Redis vanishes the way a crashed server does. */
  async kill(): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = once(proc, "exit");
    proc.kill("SIGKILL");
    await exited;
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
