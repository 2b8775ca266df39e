/**
 * Closed-loop load generator for the memcached text protocol: each connection sends a batch of
 * `depth` requests in one write and sends the next batch when all replies are in. Latency is
 * measured per request, from its batch's write to its reply.
 */
import { connect, type Socket } from "node:net";

export interface LoadOptions {
  port: number;
  host?: string;
  /** The classic commands, or their meta twins (mg with v and f, ms). */
  op: "get" | "set" | "mg" | "ms";
  connections: number;
  depth: number;
  durationMs: number;
  keys: number;
  valueSize: number;
}

export interface LoadResult {
  ops: number;
  seconds: number;
  opsPerSecond: number;
  p50us: number;
  p99us: number;
  errors: number;
}

const END = 0x45; // 'E' of END / ERROR / EN
const STORED = 0x53; // 'S' of STORED / SERVER_ERROR
const NOT_A_REPLY = 0;
const ANSWERED = 1;
const FAILED = 2;

/**
 * What a line starting with `c`, `c2` is to a load of `op`: the end of a reply, a failed one, or
 * neither (a VALUE line, a data block: every key is there and values are x's).
 */
function replyAt(op: LoadOptions["op"], c: number, c2: number): number {
  switch (op) {
    case "get":
      return c !== END ? NOT_A_REPLY : c2 === 0x52 ? FAILED : ANSWERED;
    case "set":
      return c !== STORED ? NOT_A_REPLY : c2 === 0x45 ? FAILED : ANSWERED;
    case "mg":
      // VA, or EN (a miss: every key was loaded) and error lines.
      return c === 0x56 ? ANSWERED : c === END || c === STORED || c === 0x43 ? FAILED : NOT_A_REPLY;
    case "ms":
      // Every line is a reply: HD, or NS/EX/NF and error lines.
      return c === 0x48 ? ANSWERED : FAILED;
  }
}

/** Pre-encodes batches so the generator spends its CPU on I/O, not on building strings. */
function makeBatches(o: LoadOptions): Buffer[] {
  const value = "x".repeat(o.valueSize);
  const batches: Buffer[] = [];
  const count = Math.max(256, Math.ceil(o.keys / o.depth));
  for (let b = 0; b < count; b++) {
    let s = "";
    for (let i = 0; i < o.depth; i++) {
      const key = `key:${(b * o.depth + i) % o.keys}`;
      s +=
        o.op === "get"
          ? `get ${key}\r\n`
          : o.op === "set"
            ? `set ${key} 0 0 ${o.valueSize}\r\n${value}\r\n`
            : o.op === "mg"
              ? `mg ${key} v f\r\n`
              : `ms ${key} ${o.valueSize}\r\n${value}\r\n`;
    }
    batches.push(Buffer.from(s));
  }
  return batches;
}

export async function preload(
  port: number,
  keys: number,
  valueSize: number,
  host = "127.0.0.1",
): Promise<void> {
  await runLoad(
    { port, host, op: "set", connections: 1, depth: 100, durationMs: 0, keys, valueSize },
    Math.ceil(keys / 100),
  );
}

/** Runs for `durationMs`, or until `maxBatches` batches per connection when given. */
export async function runLoad(o: LoadOptions, maxBatches = Number.POSITIVE_INFINITY): Promise<LoadResult> {
  const batches = makeBatches(o);
  const latencies: number[] = [];
  let ops = 0;
  let errors = 0;
  const started = performance.now();
  const deadline = o.durationMs > 0 ? started + o.durationMs : Number.POSITIVE_INFINITY;

  const one = (index: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const socket: Socket = connect({ port: o.port, host: o.host ?? "127.0.0.1", noDelay: true });
      let sentAt = 0;
      let awaiting = 0;
      let lineStart = true;
      let batchNo = index * 61;
      let sentBatches = 0;
      const send = (): void => {
        if (performance.now() >= deadline || sentBatches >= maxBatches) {
          socket.end();
          return;
        }
        awaiting = o.depth;
        sentAt = performance.now();
        sentBatches++;
        socket.write(batches[batchNo++ % batches.length] as Buffer);
      };
      socket.on("connect", send);
      socket.on("error", reject);
      socket.on("close", () => resolve());
      socket.on("data", (chunk: Buffer) => {
        let pos = 0;
        const now = performance.now();
        while (pos < chunk.length) {
          if (lineStart) {
            const reply = replyAt(o.op, chunk[pos] as number, chunk[pos + 1] as number);
            if (reply !== NOT_A_REPLY) {
              if (reply === FAILED) errors++;
              awaiting--;
              ops++;
              latencies.push(now - sentAt);
            }
          }
          const nl = chunk.indexOf(10, pos);
          if (nl < 0) {
            lineStart = false;
            break;
          }
          lineStart = true;
          pos = nl + 1;
        }
        if (awaiting === 0) send();
      });
    });

  await Promise.all(Array.from({ length: o.connections }, (_, i) => one(i)));
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const pct = (p: number): number =>
    Math.round((latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? 0) * 1000);
  return { ops, seconds, opsPerSecond: ops / seconds, p50us: pct(0.5), p99us: pct(0.99), errors };
}
