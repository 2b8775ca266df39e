/**
 * `npm run bench -- failover`: the seed's drill, timed. Each round starts an index
 * (monitor-interval 1, monitor-threshold 3), a master and a slave, kills the master with -9, and
 * measures how long until the new map has reached the slave (it takes a write).
 */
import { ask, startCluster } from "../harness/cluster.js";

async function round(): Promise<number> {
  // The seed's layout: master balance 1, slave balance 2.
  const cluster = await startCluster(1);
  const slave = cluster.slaves[0] as { port: number };
  try {
    // Let the monitors settle into their interval, as in a running cluster.
    await new Promise((r) => setTimeout(r, 1500 + Math.random() * 1000));
    const killed = performance.now();
    await cluster.master.kill("SIGKILL");
    while ((await ask(slave.port, "set probe 0 0 1\r\nx\r\n")) !== "STORED\r\n") {
      await new Promise((r) => setTimeout(r, 5));
      if (performance.now() - killed > 30_000) throw new Error("no failover within 30 s");
    }
    return performance.now() - killed;
  } finally {
    await cluster.stop();
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
