import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ask, joinArgs, startCluster, startRole } from "../harness/cluster.js";
import { cpuSeconds, startMemcached, startTwemproxy } from "../harness/servers.js";
import { runHttpLoad } from "./http-load.js";
import { type LoadOptions, preload, runLoad } from "./load.js";

const KEYS = 10_000;
const VALUE = 32;
const META_OPS = ["ms", "mg"] as const;
const ALL_OPS = ["set", "get", ...META_OPS] as const;

interface Row {
  path: string;
  op: string;
  opsPerSecond: number;
  p99us: number;
  hopCpuUs: number | undefined;
}

async function measure(
  path: string,
  port: number,
  hopPid: number | undefined,
  durationMs: number,
  ops: readonly LoadOptions["op"][] = ["set", "get"],
): Promise<Row[]> {
  await preload(port, KEYS, VALUE);
  const rows: Row[] = [];
  for (const op of ops) {
    const o = { port, op, connections: 8, depth: 16, keys: KEYS, valueSize: VALUE };
    await runLoad({ ...o, durationMs: 300 });
    const cpu0 = hopPid === undefined ? 0 : cpuSeconds(hopPid);
    const r = await runLoad({ ...o, durationMs });
    const cpu = hopPid === undefined ? undefined : ((cpuSeconds(hopPid) - cpu0) * 1e6) / r.ops;
    rows.push({ path, op, opsPerSecond: r.opsPerSecond, p99us: r.p99us, hopCpuUs: cpu });
  }
  return rows;
}

async function measureHttp(
  path: string,
  origin: string,
  hopPid: number | undefined,
  durationMs: number,
): Promise<Row[]> {
  const rows: Row[] = [];
  for (const op of ["put", "get"] as const) {
    await runHttpLoad(origin, op, 16, 300);
    const cpu0 = hopPid === undefined ? 0 : cpuSeconds(hopPid);
    const r = await runHttpLoad(origin, op, 16, durationMs);
    const cpu = hopPid === undefined ? undefined : ((cpuSeconds(hopPid) - cpu0) * 1e6) / r.ops;
    rows.push({ path, op, opsPerSecond: r.opsPerSecond, p99us: r.p99us, hopCpuUs: cpu });
  }
  return rows;
}

/**
 * Two hops in front of the same server, measured in turns (A B, then B A) and averaged: on this
 * shared machine a row measured later can run 10-15% slower for no reason of its own.
 */
async function interleaved(
  hops: { path: string; port: number; pid: number }[],
  durationMs: number,
): Promise<Row[]> {
  const runs = new Map<string, Row[]>();
  for (const order of [hops, [...hops].reverse()]) {
    for (const h of order) {
      for (const r of await measure(h.path, h.port, h.pid, durationMs)) {
        const key = `${r.path} ${r.op}`;
        runs.set(key, [...(runs.get(key) ?? []), r]);
      }
    }
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return [...runs.values()].map((rs) => ({
    ...(rs[0] as Row),
    opsPerSecond: mean(rs.map((r) => r.opsPerSecond)),
    p99us: Math.max(...rs.map((r) => r.p99us)),
    hopCpuUs: mean(rs.map((r) => r.hopCpuUs ?? 0)),
  }));
}

/**
 * The flare-ts proxy in front of a plain memcached, as twemproxy is: the index is told about it by
 * hand (`node add` on its behalf) and made its master. memcached answers the index's pings with
 * ERROR, so monitoring is set to take minutes to give up on it; a benchmark row takes seconds.
 */
async function proxyInFront(
  memcachedPort: number,
): Promise<{ port: number; pid: number; stop: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), "flare-bench-index-"));
  const index = await startRole("index", [
    "--data-dir",
    dir,
    "--monitor-interval",
    "3600",
    "--monitor-threshold",
    "100",
    "--monitor-retry-wait",
    "60000",
  ]);
  await ask(index.port, `node add localhost ${memcachedPort}\r\n`, "END\r\n");
  const role = await ask(index.port, `node role localhost ${memcachedPort} master 1 0\r\n`);
  if (role !== "OK\r\n") throw new Error(`node role for memcached: ${role}`);
  const proxy = await startRole("proxy", joinArgs(index.port));
  return {
    port: proxy.port,
    pid: proxy.pid,
    stop: async () => {
      await proxy.kill("SIGTERM");
      await index.kill("SIGTERM");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function proxyBench(durationMs: number): Promise<void> {
  const rows: Row[] = [];
  const cluster = await startCluster(0, ["--http-port", "0"]);
  const proxy = await startRole("proxy", joinArgs(cluster.index.port, ["--http-port", "0"]));
  try {
    rows.push(
      ...(await measure("flare-ts node, direct", cluster.master.port, undefined, durationMs, ALL_OPS)),
    );
    // twemproxy does not speak the meta protocol: the flare-ts proxy's meta rows stand alone.
    rows.push(...(await measure("flare-ts proxy -> node", proxy.port, proxy.pid, durationMs, META_OPS)));
    // The same hop in C in front of the same node: what the proxy itself costs, apart from the backend.
    const twemNode = await startTwemproxy(cluster.master.port);
    try {
      rows.push(
        ...(await interleaved(
          [
            { path: "flare-ts proxy -> node", port: proxy.port, pid: proxy.pid },
            { path: "twemproxy -> flare-ts node", port: twemNode.port, pid: twemNode.pid },
          ],
          durationMs,
        )),
      );
    } finally {
      await twemNode.stop();
    }
    rows.push(
      ...(await measureHttp(
        "HTTP: node, direct",
        `http://127.0.0.1:${cluster.master.httpPort}`,
        undefined,
        durationMs,
      )),
    );
    rows.push(
      ...(await measureHttp(
        "HTTP: flare-ts proxy -> node",
        `http://127.0.0.1:${proxy.httpPort}`,
        proxy.pid,
        durationMs,
      )),
    );
  } finally {
    await proxy.kill("SIGTERM");
    await cluster.stop();
  }
  const memcached = await startMemcached();
  const twem = await startTwemproxy(memcached.port);
  const flareToMemcached = await proxyInFront(memcached.port);
  try {
    rows.push(...(await measure("memcached, direct", memcached.port, undefined, durationMs, ALL_OPS)));
    rows.push(
      ...(await interleaved(
        [
          { path: "twemproxy -> memcached", port: twem.port, pid: twem.pid },
          { path: "flare-ts proxy -> memcached", port: flareToMemcached.port, pid: flareToMemcached.pid },
        ],
        durationMs,
      )),
    );
  } finally {
    await flareToMemcached.stop();
    await twem.stop();
    await memcached.stop();
  }
  console.log(
    `\nmemcached: 8 connections x 16 in flight; HTTP: 16 keep-alive connections; ${VALUE}-byte values, ${durationMs / 1000} s per row; proxies in front of the same server are measured in turns, twice, and averaged\n`,
  );
  console.log("| path | op | ops/s | p99 µs | proxy CPU µs/op |");
  console.log("|---|---|---|---|---|");
  for (const r of rows) {
    console.log(
      `| ${r.path} | ${r.op} | ${Math.round(r.opsPerSecond).toLocaleString("en-US")} | ${r.p99us} | ${r.hopCpuUs === undefined ? "-" : r.hopCpuUs.toFixed(1)} |`,
    );
  }
}
