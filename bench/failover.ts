/**
 * `npm run bench -- failover`: the seed's drill, timed. Each round starts an index
 * (monitor-interval 1, monitor-threshold 3), a master and a slave, kills the master with -9, and
 * measures how long until the new map has reached the slave (it takes a write).
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const CLI = fileURLToPath(new URL("../cli/main.js", import.meta.url));

interface Proc {
  port: number;
  kill(signal: NodeJS.Signals): Promise<void>;
}

async function start(role: "index" | "node", args: string[]): Promise<Proc> {
  const proc = spawn(process.execPath, [CLI, role, "--server-port", "0", ...args], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, FLARE_LOG: "info" },
  });
  let stderr = "";
  const port = await new Promise<number>((resolve, reject) => {
    proc.stderr?.on("data", (d: Buffer) => {
      stderr += d.toString();
      const line = stderr.split("\n").find((l) => l.includes(`"${role} started"`));
      if (line) resolve((JSON.parse(line) as { port: number }).port);
    });
    proc.once("exit", (code) => reject(new Error(`${role} exited ${code}: ${stderr}`)));
  });
  return {
    port,
    async kill(signal) {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = once(proc, "exit");
      proc.kill(signal);
      await exited;
    },
  };
}

function ask(port: number, text: string): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ port, host: "127.0.0.1" });
    let out = "";
    s.on("data", (d) => {
      out += d.toString();
      if (out.endsWith("\r\n")) {
        s.destroy();
        resolve(out);
      }
    });
    s.on("error", () => resolve(""));
    s.write(text);
  });
}

async function round(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "flare-failover-"));
  const index = await start("index", [
    "--data-dir",
    dir,
    "--monitor-interval",
    "1",
    "--monitor-threshold",
    "3",
  ]);
  const nodeArgs = [
    "--server-name",
    "localhost",
    "--index-server-name",
    "127.0.0.1",
    "--index-server-port",
    String(index.port),
  ];
  const master = await start("node", nodeArgs);
  const slave = await start("node", nodeArgs);
  try {
    for (const cmd of [
      `node role localhost ${master.port} master 1 0`,
      `node role localhost ${slave.port} slave 2 0`,
      `node state localhost ${slave.port} active`,
      `node role localhost ${slave.port} slave 2 0`,
    ]) {
      const r = await ask(index.port, `${cmd}\r\n`);
      if (r !== "OK\r\n") throw new Error(`${cmd}: ${r}`);
    }
    // Let the monitors settle into their interval, as in a running cluster.
    await new Promise((r) => setTimeout(r, 1500 + Math.random() * 1000));
    const killed = performance.now();
    await master.kill("SIGKILL");
    while ((await ask(slave.port, "set probe 0 0 1\r\nx\r\n")) !== "STORED\r\n") {
      await new Promise((r) => setTimeout(r, 5));
      if (performance.now() - killed > 30_000) throw new Error("no failover within 30 s");
    }
    return performance.now() - killed;
  } finally {
    await slave.kill("SIGTERM");
    await index.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function failoverBench(rounds: number): Promise<void> {
  const times: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const ms = await round();
    times.push(ms);
    console.log(`kill ${i + 1}: new map reached the slave after ${Math.round(ms)} ms`);
  }
  const sorted = [...times].sort((a, b) => a - b);
  const median =
    sorted.length % 2
      ? (sorted[(sorted.length - 1) / 2] as number)
      : ((sorted[sorted.length / 2 - 1] as number) + (sorted[sorted.length / 2] as number)) / 2;
  console.log(
    `\nfailover, monitor-interval 1, monitor-threshold 3: median ${Math.round(median)} ms, max ${Math.round(sorted.at(-1) as number)} ms over ${rounds} kills (target: max under 2500 ms)`,
  );
}
