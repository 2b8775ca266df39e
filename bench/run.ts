/**
 * `npm run bench [-- --duration S]` (or `npm run bench -- failover|replication|proxy [--rounds N]`;
 * `flare bench ...` is the same): get/set throughput, p50/p99 latency and server CPU per
 * operation for a flare-ts node and, in the same run under the same load, a real memcached.
 */

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  type BenchServer,
  cpuSeconds,
  startFlareNode,
  startMemcached,
  startRedis,
} from "../harness/servers.js";
import { addPartitionBench } from "./add-partition.js";
import { dashboardBench } from "./dashboard.js";
import { failoverBench } from "./failover.js";
import { preload, runLoad } from "./load.js";
import { memoryBench } from "./memory.js";
import { oneInFlightBench } from "./one-in-flight.js";
import { proxyBench } from "./proxy.js";
import { replicationBench } from "./replication.js";

interface Row {
  server: string;
  workload: string;
  op: string;
  opsPerSecond: number;
  p50us: number;
  p99us: number;
  cpuUsPerOp: number;
  cpuPercent: number;
  errors: number;
}

const KEYS = 10_000;
const VALUE_SIZE = 32;
const workloads = [
  { name: "pipelined 4x32", connections: 4, depth: 32 },
  { name: "request/reply 50x1", connections: 50, depth: 1 },
];

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

async function measure(server: BenchServer, durationMs: number): Promise<Row[]> {
  await preload(server.port, KEYS, VALUE_SIZE);
  const rows: Row[] = [];
  for (const w of workloads) {
    for (const op of ["set", "get", "ms", "mg"] as const) {
      // Warm-up (JIT, connection set-up), not counted.
      await runLoad({
        port: server.port,
        op,
        connections: w.connections,
        depth: w.depth,
        durationMs: 300,
        keys: KEYS,
        valueSize: VALUE_SIZE,
      });
      const pids = server.pids ?? [server.pid];
      const cpuOf = () => pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
      const cpu0 = cpuOf();
      const r = await runLoad({
        port: server.port,
        op,
        connections: w.connections,
        depth: w.depth,
        durationMs,
        keys: KEYS,
        valueSize: VALUE_SIZE,
      });
      const cpu = cpuOf() - cpu0;
      rows.push({
        server: server.name,
        workload: w.name,
        op,
        opsPerSecond: r.opsPerSecond,
        p50us: r.p50us,
        p99us: r.p99us,
        cpuUsPerOp: (cpu * 1e6) / r.ops,
        cpuPercent: (cpu / r.seconds) * 100,
        errors: r.errors,
      });
    }
  }
  return rows;
}

function table(rows: Row[]): string {
  const head = [
    "server",
    "workload",
    "op",
    "ops/s",
    "p50 µs",
    "p99 µs",
    "CPU µs/op",
    "server CPU %",
    "errors",
  ];
  const body = rows.map((r) => [
    r.server,
    r.workload,
    r.op,
    Math.round(r.opsPerSecond).toLocaleString("en-US"),
    String(r.p50us),
    String(r.p99us),
    r.cpuUsPerOp.toFixed(1),
    r.cpuPercent.toFixed(0),
    String(r.errors),
  ]);
  const all = [head, ...body];
  const widths = head.map((_, i) => Math.max(...all.map((row) => (row[i] as string).length)));
  const line = (row: string[]) => `| ${row.map((c, i) => c.padEnd(widths[i] as number)).join(" | ")} |`;
  return [line(head), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...body.map(line)].join("\n");
}

/** Reads its options from process.argv, so `npm run bench -- proxy` and `flare bench proxy` agree. */
export async function runBench(): Promise<void> {
  if (process.argv.includes("failover")) {
    await failoverBench(arg("rounds", 10));
    return;
  }
  if (process.argv.includes("proxy")) {
    await proxyBench(arg("duration", 3) * 1000);
    return;
  }
  if (process.argv.includes("add-partition")) {
    await addPartitionBench(arg("items", 1_000_000), arg("duration", 3));
    return;
  }
  if (process.argv.includes("dashboard")) {
    await dashboardBench(arg("duration", 6));
    return;
  }
  if (process.argv.includes("one-in-flight")) {
    await oneInFlightBench(arg("duration", 5), arg("connections", 50), arg("rounds", 2));
    return;
  }
  if (process.argv.includes("memory")) {
    const items = process.argv.includes("--items") ? arg("items", 0) : undefined;
    const limit = process.argv.includes("--limit") ? arg("limit", 1024) : undefined;
    await memoryBench(items, limit);
    return;
  }
  if (process.argv.includes("replication")) {
    await replicationBench(arg("duration", 3) * 1000, arg("rounds", 10));
    return;
  }
  const durationMs = arg("duration", 3) * 1000;
  const rows: Row[] = [];
  const starters: (() => Promise<BenchServer>)[] = [
    startMemcached,
    () => startFlareNode("flare-ts memory"),
    () => {
      const dir = mkdtempSync(join(tmpdir(), "flare-bench-leveldb-"));
      return startFlareNode("flare-ts leveldb", ["--storage-type", "leveldb", "--data-dir", dir], async () =>
        rmSync(dir, { recursive: true, force: true }),
      );
    },
    async () => {
      const redis = await startRedis();
      const node = await startFlareNode(
        "flare-ts redis",
        ["--storage-type", "redis", "--redis-url", redis.url],
        redis.stop,
      );
      // The node's CPU alone hides the hop: count redis-server's too.
      return { ...node, pids: [node.pid, redis.pid] };
    },
  ];
  for (const start of starters) {
    const server = await start();
    try {
      rows.push(...(await measure(server, durationMs)));
    } finally {
      await server.stop();
    }
  }
  console.log(
    `\nmemcached text protocol, ${KEYS} keys, ${VALUE_SIZE}-byte values, ${durationMs / 1000} s per row\n`,
  );
  console.log(table(rows));
  console.log("\nflare-ts / memcached:");
  for (const row of rows.filter((r) => r.server.startsWith("flare"))) {
    const base = rows.find(
      (r) => r.server.startsWith("memcached") && r.workload === row.workload && r.op === row.op,
    );
    if (!base) continue;
    console.log(
      `  ${row.server}, ${row.workload} ${row.op}: throughput ${(row.opsPerSecond / base.opsPerSecond).toFixed(2)}x, CPU/op ${(row.cpuUsPerOp / base.cpuUsPerOp).toFixed(2)}x`,
    );
  }
  console.log(
    "\nCPU µs/op and server CPU % count every server process of the row (flare-ts redis: node + redis-server).",
  );
  const saturated = rows.filter((r) => r.server.startsWith("memcached") && r.cpuPercent < 80);
  if (saturated.length > 0) {
    console.log(
      "\nnote: memcached stayed under 80% CPU in some rows: the load generator or the loopback was the limit there.",
    );
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  runBench().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
