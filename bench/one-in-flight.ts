/**
 * `npm run bench -- one-in-flight [--duration S] [--connections N] [--rounds R]`: the shape most traffic has,
 * many connections with one request in flight each (bench/oneload.c, a C epoll client: 90% get,
 * 20-byte values, 10 000 keys), against memcached, a flare-ts node, twemproxy in front of each, and
 * the flare-ts proxy in front of a flare-ts master, one after another in the same run, in `--rounds`
 * turns (default 2) that are averaged. Server CPU is read from /proc over the measured seconds only.
 */
import { execFileSync, spawn } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { joinArgs, startCluster, startRole } from "../harness/cluster.js";
import { cpuSeconds, startFlareNode, startMemcached, startTwemproxy } from "../harness/servers.js";

interface Target {
  name: string;
  port: number;
  /** Every process of the path (hop and server). */
  pids: number[];
  /** The hop alone, when the path has one. */
  hop?: number;
}

export interface OneInFlightRow {
  name: string;
  opsPerSecond: number;
  p50us: number;
  p99us: number;
  cpuUsPerOp: number;
  hopCpuUsPerOp: number | undefined;
  errors: number;
}

const SOURCE = fileURLToPath(new URL("../../bench/oneload.c", import.meta.url));

/** Compiles bench/oneload.c once per version of the source. */
export function oneloadBinary(): string {
  const stamp = statSync(SOURCE).mtimeMs.toFixed(0);
  const bin = join(tmpdir(), `flare-oneload-${stamp}`);
  if (!existsSync(bin)) {
    try {
      execFileSync("gcc", ["-O2", "-o", bin, SOURCE], { stdio: "pipe" });
    } catch (err) {
      throw new Error(`building bench/oneload.c needs gcc (apt-get install gcc): ${String(err)}`);
    }
  }
  return bin;
}

/** One oneload run against `t`; CPU is read at the generator's start and stop marks. */
export function measureOneInFlight(
  bin: string,
  t: Target,
  seconds: number,
  connections: number,
): Promise<OneInFlightRow> {
  const cpu = () => t.pids.map((pid) => cpuSeconds(pid));
  return new Promise((resolve, reject) => {
    const args = ["-p", String(t.port), "-c", String(connections), "-d", String(seconds), "-w", "1"];
    const proc = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    let at: number[] = [];
    let used: number[] = [];
    proc.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    proc.stderr.on("data", (d: Buffer) => {
      err += d.toString();
      if (err.includes("start\n") && at.length === 0) at = cpu();
      if (err.includes("stop\n") && used.length === 0) used = cpu().map((c, i) => c - (at[i] as number));
    });
    proc.on("error", reject);
    proc.on("exit", (code) => {
      if (code !== 0 || used.length === 0) {
        reject(new Error(`oneload against ${t.name} failed (${code}): ${err.trim()}`));
        return;
      }
      const r = JSON.parse(out) as {
        ops: number;
        opsPerSecond: number;
        p50us: number;
        p99us: number;
        errors: number;
      };
      const hopIndex = t.hop === undefined ? -1 : t.pids.indexOf(t.hop);
      resolve({
        name: t.name,
        opsPerSecond: r.opsPerSecond,
        p50us: r.p50us,
        p99us: r.p99us,
        cpuUsPerOp: (used.reduce((a, b) => a + b, 0) * 1e6) / r.ops,
        hopCpuUsPerOp: hopIndex < 0 ? undefined : ((used[hopIndex] as number) * 1e6) / r.ops,
        errors: r.errors,
      });
    });
  });
}

function average(rs: OneInFlightRow[]): OneInFlightRow {
  const mean = (f: (r: OneInFlightRow) => number) => rs.reduce((a, r) => a + f(r), 0) / rs.length;
  const first = rs[0] as OneInFlightRow;
  return {
    name: first.name,
    opsPerSecond: mean((r) => r.opsPerSecond),
    p50us: Math.round(mean((r) => r.p50us)),
    p99us: Math.max(...rs.map((r) => r.p99us)),
    cpuUsPerOp: mean((r) => r.cpuUsPerOp),
    hopCpuUsPerOp: first.hopCpuUsPerOp === undefined ? undefined : mean((r) => r.hopCpuUsPerOp ?? 0),
    errors: rs.reduce((a, r) => a + r.errors, 0),
  };
}

function table(rows: OneInFlightRow[]): string {
  const head = ["path", "ops/s", "p50 µs", "p99 µs", "CPU µs/op (all)", "hop CPU µs/op", "errors"];
  const body = rows.map((r) => [
    r.name,
    Math.round(r.opsPerSecond).toLocaleString("en-US"),
    String(r.p50us),
    String(r.p99us),
    r.cpuUsPerOp.toFixed(1),
    r.hopCpuUsPerOp === undefined ? "" : r.hopCpuUsPerOp.toFixed(1),
    String(r.errors),
  ]);
  const all = [head, ...body];
  const widths = head.map((_, i) => Math.max(...all.map((row) => (row[i] as string).length)));
  const line = (row: string[]) => `| ${row.map((c, i) => c.padEnd(widths[i] as number)).join(" | ")} |`;
  return [line(head), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...body.map(line)].join("\n");
}

export async function oneInFlightBench(seconds: number, connections: number, rounds: number): Promise<void> {
  const bin = oneloadBinary();
  const memcached = await startMemcached();
  const node = await startFlareNode("flare-ts node (memory)");
  const twemMemcached = await startTwemproxy(memcached.port);
  const twemNode = await startTwemproxy(node.port);
  const cluster = await startCluster(0);
  const proxy = await startRole("proxy", joinArgs(cluster.index.port));
  // A node with no partition passes every request on to the master (any node answers any key).
  const passing = await startRole("node", joinArgs(cluster.index.port));
  const targets: Target[] = [
    { name: "memcached -t 1", port: memcached.port, pids: [memcached.pid] },
    { name: "flare-ts node (memory)", port: node.port, pids: [node.pid] },
    {
      name: "twemproxy -> memcached",
      port: twemMemcached.port,
      pids: [twemMemcached.pid, memcached.pid],
      hop: twemMemcached.pid,
    },
    {
      name: "twemproxy -> flare-ts node",
      port: twemNode.port,
      pids: [twemNode.pid, node.pid],
      hop: twemNode.pid,
    },
    {
      name: "flare-ts proxy -> flare-ts master",
      port: proxy.port,
      pids: [proxy.pid, cluster.master.pid],
      hop: proxy.pid,
    },
    {
      name: "flare-ts node passing on -> master",
      port: passing.port,
      pids: [passing.pid, cluster.master.pid],
      hop: passing.pid,
    },
  ];
  const runs = new Map<string, OneInFlightRow[]>(targets.map((t) => [t.name, []]));
  try {
    // Rounds run forward, then backward: on this shared machine a row measured later can run
    // slower for no reason of its own, so every row gets early and late turns alike.
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? targets : [...targets].reverse();
      for (const t of order) runs.get(t.name)?.push(await measureOneInFlight(bin, t, seconds, connections));
    }
  } finally {
    await Promise.all([proxy.kill("SIGTERM"), passing.kill("SIGTERM")]);
    await Promise.all([cluster.stop(), twemMemcached.stop(), twemNode.stop(), node.stop(), memcached.stop()]);
  }
  const rows = targets.map((t) => average(runs.get(t.name) as OneInFlightRow[]));
  console.log(
    `\none request in flight per connection: ${connections} connections, 90% get, 20-byte values, ${seconds} s per row, mean of ${rounds} rounds (forward, then backward)\n`,
  );
  console.log(table(rows));
  const by = (name: string) => rows.find((r) => r.name === name) as OneInFlightRow;
  const mc = by("memcached -t 1");
  const nd = by("flare-ts node (memory)");
  const tw = by("twemproxy -> flare-ts node");
  const px = by("flare-ts proxy -> flare-ts master");
  console.log(
    `\nnode / memcached: throughput ${(nd.opsPerSecond / mc.opsPerSecond).toFixed(2)}x, CPU/op ${(nd.cpuUsPerOp / mc.cpuUsPerOp).toFixed(2)}x`,
  );
  console.log(
    `flare-ts proxy / twemproxy (both in front of a flare-ts node): throughput ${(px.opsPerSecond / tw.opsPerSecond).toFixed(2)}x, hop CPU/op ${((px.hopCpuUsPerOp ?? 0) / (tw.hopCpuUsPerOp ?? 1)).toFixed(2)}x`,
  );
}
