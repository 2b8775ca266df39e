/**
 * `npm run bench -- failover`: the seed's drill, timed. Each round starts an index
 * (monitor-interval 1, monitor-threshold 3), a master and a slave, kills the master with -9, and
 * measures how long until the new map has reached the slave (it takes a write).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ask, startRole as start } from "./cluster.js";

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
