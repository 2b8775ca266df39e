/**
 * `npm run bench -- memory [--items N --limit MB]`: memory and a full cache, memcached and a
 * flare-ts node side by side. Each is filled with N items of 100-byte values under 14-byte keys
 * (pipelined noreply sets, 50 000 a batch, each batch closed by a get); the bench reports sets/s
 * before and after the limit is reached, RSS once filled, evictions, whether the newest items are
 * all there, and gets/s of the newest keys. Without --items it runs the three cases of the README.
 */
import { readFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { type BenchServer, startFlareNode, startMemcached } from "../harness/servers.js";

const BATCH = 50_000;
const VALUE = Buffer.alloc(100, 0x61);
const key = (i: number): string => `k${String(i).padStart(13, "0")}`;

interface Filled {
  server: string;
  limitMb: number;
  items: number;
  /** sets/s of each batch. */
  rates: number[];
  rssMb: number;
  evictions: number;
  currItems: number;
  /** Of the newest 10 000 keys, how many are there. */
  newestKept: number;
  getsPerSecond: number;
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1] ?? 0) / 1024;
}

/** Sends `data` and resolves with what comes back once `count` replies ended with `END`. */
function exchange(socket: Socket, data: Buffer, count = 1): Promise<string> {
  return new Promise((resolve) => {
    let text = "";
    let seen = 0;
    const onData = (d: Buffer): void => {
      const piece = d.toString("latin1");
      // Values and keys hold no "END": each one closes a reply (an END split across reads is
      // found by looking at the seam).
      seen += ((text.slice(-4) + piece).match(/END\r\n/g) ?? []).length;
      text += piece;
      if (seen >= count) {
        socket.off("data", onData);
        resolve(text);
      }
    };
    socket.on("data", onData);
    socket.write(data);
  });
}

/** Items `from` to `to` (exclusive) as pipelined noreply sets, closed by a get that waits for them. */
function setBatch(socket: Socket, from: number, to: number): Promise<string> {
  const parts: Buffer[] = [];
  for (let i = from; i < to; i++)
    parts.push(Buffer.from(`set ${key(i)} 0 0 ${VALUE.length} noreply\r\n`), VALUE, CRLF);
  parts.push(Buffer.from("get zz-barrier\r\n"));
  return exchange(socket, Buffer.concat(parts));
}

/** Fills the server at `port` with `items` items, BATCH sets at a time; sets/s of each batch. */
export async function fillItems(port: number, items: number): Promise<{ socket: Socket; rates: number[] }> {
  const socket = connect({ port, host: "127.0.0.1" });
  await new Promise((r) => socket.once("connect", r));
  const rates: number[] = [];
  for (let from = 0; from < items; from += BATCH) {
    const t0 = performance.now();
    await setBatch(socket, from, Math.min(items, from + BATCH));
    rates.push((Math.min(BATCH, items - from) / (performance.now() - t0)) * 1000);
  }
  return { socket, rates };
}

async function fill(server: BenchServer, limitMb: number, items: number): Promise<Filled> {
  const { socket, rates } = await fillItems(server.port, items);
  const stats = await exchange(socket, Buffer.from("stats\r\n"));
  const stat = (name: string) => Number(new RegExp(`STAT ${name} (\\d+)`).exec(stats)?.[1] ?? 0);
  // The newest keys, 100 per get line.
  const newest = Array.from({ length: 10_000 }, (_, i) => key(items - 1 - i));
  let lines = "";
  for (let i = 0; i < newest.length; i += 100) lines += `get ${newest.slice(i, i + 100).join(" ")}\r\n`;
  const t0 = performance.now();
  let kept = 0;
  const rounds = 5;
  for (let r = 0; r < rounds; r++) {
    const text = await exchange(socket, Buffer.from(lines), newest.length / 100);
    if (r === 0) kept = (text.match(/^VALUE /gm) ?? []).length;
  }
  const getsPerSecond = ((newest.length * rounds) / (performance.now() - t0)) * 1000;
  socket.destroy();
  return {
    server: server.name,
    limitMb,
    items,
    rates,
    rssMb: rssMb(server.pid),
    evictions: stat("evictions"),
    currItems: stat("curr_items"),
    newestKept: kept,
    getsPerSecond,
  };
}

const CRLF = Buffer.from("\r\n");

async function both(limitMb: number, items: number): Promise<Filled[]> {
  const out: Filled[] = [];
  for (const start of [
    () => startMemcached(limitMb),
    () => startFlareNode("flare-ts node (memory)", ["--memory-limit", `${limitMb}m`]),
  ]) {
    const server = await start();
    try {
      out.push(await fill(server, limitMb, items));
    } finally {
      await server.stop();
    }
  }
  return out;
}

function report(rows: Filled[]): void {
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  for (const r of rows) {
    // Before the limit: batches that evicted nothing (the first ones); after: the last third.
    const before =
      r.evictions === 0 ? r.rates : r.rates.slice(0, Math.max(1, Math.floor(r.currItems / BATCH) - 1));
    const after = r.rates.slice(Math.floor((r.rates.length * 2) / 3));
    console.log(
      `  ${r.server.padEnd(24)} RSS ${r.rssMb.toFixed(0).padStart(5)} MB, items ${r.currItems.toLocaleString("en-US").padStart(10)}, evictions ${r.evictions.toLocaleString("en-US").padStart(10)}, newest 10 000 kept ${r.newestKept.toLocaleString("en-US")}, sets/s first batches ${Math.round(mean(before)).toLocaleString("en-US")}, last third ${Math.round(mean(after)).toLocaleString("en-US")}, gets/s ${Math.round(r.getsPerSecond).toLocaleString("en-US")}`,
    );
  }
  const [mc, node] = rows as [Filled, Filled];
  console.log(
    `  flare-ts / memcached: RSS ${(node.rssMb / mc.rssMb).toFixed(2)}x, sets/s (last third) ${(mean(node.rates.slice(-Math.ceil(node.rates.length / 3))) / mean(mc.rates.slice(-Math.ceil(mc.rates.length / 3)))).toFixed(2)}x`,
  );
}

export async function memoryBench(items: number | undefined, limitMb: number | undefined): Promise<void> {
  const cases: [number, number, string][] =
    items !== undefined
      ? [[limitMb ?? 1024, items, "custom"]]
      : [
          [1024, 1_000_000, "1 M items, limit 1 GiB (nothing evicted): memory per item"],
          [256, 5_000_000, "5 M items, limit 256 MiB: RSS must stay near the limit, the newest items kept"],
          [64, 2_000_000, "2 M items, limit 64 MiB: a full cache evicting on every set"],
        ];
  for (const [limit, n, what] of cases) {
    console.log(
      `\n${what} (${n.toLocaleString("en-US")} x 100-byte values, 14-byte keys, limit ${limit} MB)`,
    );
    report(await both(limit, n));
  }
}
