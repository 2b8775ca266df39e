/**
 * `npm run bench -- replication`: write throughput through a master with 0, 1 and 2 slaves in async
 * and sync mode, and how many acknowledged writes async mode loses per kill -9 failover.
 */
import { connect } from "node:net";
import { ask, startCluster } from "../harness/cluster.js";
import { runLoad } from "./load.js";

async function throughput(durationMs: number): Promise<void> {
  console.log("\nwrites through the master (4 connections x 32 in flight, 32-byte values):\n");
  console.log("| slaves | mode  | set ops/s | p50 µs | p99 µs |");
  console.log("|--------|-------|-----------|--------|--------|");
  for (const slaves of [0, 1, 2]) {
    for (const mode of ["async", "sync"] as const) {
      if (slaves === 0 && mode === "sync") continue;
      const cluster = await startCluster(slaves, ["--replication-type", mode]);
      try {
        const o = {
          port: cluster.master.port,
          op: "set" as const,
          connections: 4,
          depth: 32,
          keys: 10_000,
          valueSize: 32,
        };
        await runLoad({ ...o, durationMs: 300 });
        const r = await runLoad({ ...o, durationMs });
        console.log(
          `| ${slaves}      | ${mode.padEnd(5)} | ${Math.round(r.opsPerSecond).toLocaleString("en-US").padStart(9)} | ${String(r.p50us).padStart(6)} | ${String(r.p99us).padStart(6)} |`,
        );
      } finally {
        await cluster.stop();
      }
    }
  }
}

/** Keeps writing distinct keys until the connection dies; returns the keys acknowledged. */
function writer(port: number, prefix: string): Promise<string[]> {
  return new Promise((resolve) => {
    const acked: string[] = [];
    const s = connect({ port, host: "127.0.0.1", noDelay: true });
    let i = 0;
    let buf = "";
    const send = (): void => {
      const key = `${prefix}${i}`;
      s.write(`set ${key} 0 0 ${key.length}\r\n${key}\r\n`);
    };
    s.on("connect", send);
    s.on("data", (d) => {
      buf += d.toString();
      if (!buf.endsWith("\r\n")) return;
      if (buf === "STORED\r\n") acked.push(`${prefix}${i}`);
      buf = "";
      i++;
      send();
    });
    s.on("error", () => {});
    s.on("close", () => resolve(acked));
  });
}

async function losses(rounds: number): Promise<void> {
  console.log(`\nasync mode, ${rounds} kill -9 failovers during a write load (4 writers):\n`);
  const lost: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const cluster = await startCluster(1, ["--replication-type", "async"]);
    try {
      const writers = [0, 1, 2, 3].map((w) => writer(cluster.master.port, `r${round}w${w}k`));
      await new Promise((r) => setTimeout(r, 500));
      await cluster.master.kill("SIGKILL");
      const acked = (await Promise.all(writers)).flat();
      const slave = cluster.slaves[0] as { port: number };
      while ((await ask(slave.port, "set probe 0 0 1\r\nx\r\n")) !== "STORED\r\n")
        await new Promise((r) => setTimeout(r, 20));
      let missing = 0;
      for (const key of acked) {
        const reply = await ask(slave.port, `get ${key}\r\n`, "END\r\n");
        if (!reply.includes(`\r\n${key}\r\n`)) missing++;
      }
      lost.push(missing);
      console.log(`  kill ${round + 1}: ${acked.length} writes acknowledged, ${missing} lost`);
    } finally {
      await cluster.stop();
    }
  }
  console.log(
    `  lost per failover: ${lost.join(", ")} (mean ${(lost.reduce((a, b) => a + b, 0) / rounds).toFixed(1)})`,
  );
}

export async function replicationBench(durationMs: number, rounds: number): Promise<void> {
  await throughput(durationMs);
  await losses(rounds);
}
