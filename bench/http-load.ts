/** Closed-loop HTTP load on the key API: `connections` requests in flight, for `durationMs`. */
import { Pool } from "undici";

export interface HttpLoadResult {
  ops: number;
  opsPerSecond: number;
  p99us: number;
  errors: number;
}

export async function runHttpLoad(
  origin: string,
  op: "get" | "put",
  connections: number,
  durationMs: number,
  keys = 1000,
): Promise<HttpLoadResult> {
  const pool = new Pool(origin, { connections, pipelining: 1 });
  const value = "x".repeat(32);
  const latencies: number[] = [];
  let errors = 0;
  const started = performance.now();
  const deadline = started + durationMs;
  const worker = async (w: number): Promise<void> => {
    for (let i = w; performance.now() < deadline; i += connections) {
      const t0 = performance.now();
      const res = await pool.request({
        path: `/v1/kv/key:${i % keys}`,
        method: op === "get" ? "GET" : "PUT",
        body: op === "put" ? value : undefined,
      });
      await res.body.text();
      if (res.statusCode >= 300) errors++;
      latencies.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: connections }, (_, w) => worker(w)));
  await pool.close();
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const p99 = latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * 0.99))] ?? 0;
  return {
    ops: latencies.length,
    opsPerSecond: latencies.length / seconds,
    p99us: Math.round(p99 * 1000),
    errors,
  };
}
