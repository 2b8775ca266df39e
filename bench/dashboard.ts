/**
 * `npm run bench -- dashboard [--duration S]`: what open dashboards cost the index. Its request
 * latency, one request in flight (`GET /v1/cluster` over HTTP, `stats nodes` over its text port),
 * with no dashboard open and with five dashboards' event streams open, in turns (0, 5, 0, 5), while
 * a set/get load runs on the master so that every sample has news.
 */
import { connect } from "node:net";
import { startCluster } from "../harness/cluster.js";
import { runLoad } from "./load.js";

interface Latency {
  requests: number;
  p50us: number;
  p99us: number;
}

function summary(us: number[]): Latency {
  us.sort((a, b) => a - b);
  const at = (p: number): number => Math.round(us[Math.min(us.length - 1, Math.floor(us.length * p))] ?? 0);
  return { requests: us.length, p50us: at(0.5), p99us: at(0.99) };
}

async function httpLatency(origin: string, ms: number): Promise<Latency> {
  const us: number[] = [];
  const end = performance.now() + ms;
  while (performance.now() < end) {
    const t = performance.now();
    await (await fetch(`${origin}/v1/cluster`)).arrayBuffer();
    us.push((performance.now() - t) * 1000);
  }
  return summary(us);
}

function textLatency(port: number, ms: number): Promise<Latency> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    const us: number[] = [];
    const end = performance.now() + ms;
    let sent = 0;
    let buffered = "";
    const ask = (): void => {
      sent = performance.now();
      socket.write("stats nodes\r\n");
    };
    socket.on("connect", ask);
    socket.on("error", reject);
    socket.on("data", (d: Buffer) => {
      buffered += d.toString("latin1");
      if (!buffered.endsWith("END\r\n")) return;
      buffered = "";
      us.push((performance.now() - sent) * 1000);
      if (performance.now() < end) ask();
      else {
        socket.destroy();
        resolve(summary(us));
      }
    });
  });
}

/** `n` dashboards' event streams, read as a browser reads them; returns how to close them and what came. */
function dashboards(origin: string, n: number): { close: () => Promise<number> } {
  const abort = new AbortController();
  let messages = 0;
  const reading = Array.from({ length: n }, async () => {
    try {
      const res = await fetch(`${origin}/v1/dashboard/events`, { signal: abort.signal });
      const reader = (res.body as ReadableStream<Uint8Array>).getReader();
      const text = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        messages += (text.decode(value).match(/event: state/g) ?? []).length;
      }
    } catch {
      // Closed by the bench.
    }
  });
  return {
    close: async () => {
      abort.abort();
      await Promise.all(reading);
      return messages;
    },
  };
}

export async function dashboardBench(seconds: number): Promise<void> {
  const cluster = await startCluster(1, [], ["--http-port", "0"]);
  const origin = `http://127.0.0.1:${cluster.index.httpPort}`;
  const ms = seconds * 1000;
  const rows: { open: number; http: Latency; text: Latency; messages: number }[] = [];
  const load = runLoad({
    port: cluster.master.port,
    op: "set",
    connections: 2,
    depth: 1,
    durationMs: ms * 4 + 4000,
    keys: 10_000,
    valueSize: 32,
  });
  try {
    // Warm-up: the JIT, the connections.
    await httpLatency(origin, 500);
    for (const open of [0, 5, 0, 5]) {
      const views = dashboards(origin, open);
      if (open > 0) await new Promise((r) => setTimeout(r, 500));
      const http = await httpLatency(origin, ms / 2);
      const text = await textLatency(cluster.index.port, ms / 2);
      rows.push({ open, http, text, messages: await views.close() });
    }
  } finally {
    await load;
    await cluster.stop();
  }
  console.log(`\nindex request latency, one request in flight, ${seconds / 2} s per protocol per turn\n`);
  console.log(
    "| dashboards open | GET /v1/cluster p50 / p99 µs | stats nodes p50 / p99 µs | events pushed |",
  );
  console.log("|---|---|---|---|");
  for (const r of rows)
    console.log(
      `| ${r.open} | ${r.http.p50us} / ${r.http.p99us} (${r.http.requests}) | ${r.text.p50us} / ${r.text.p99us} (${r.text.requests}) | ${r.messages} |`,
    );
}
