/**
 * `npm run bench -- add-partition [--items N --duration S]`: how long adding a partition takes
 * with N items (default 1 M, 100-byte values) on one partition (master and slave), and what it
 * does to clients: bench/oneload.c through the proxy (50 connections, one request in flight each)
 * for S seconds (default 3) before the add, again for S seconds from just before it, and once more
 * over the old master's cleanup (it drops the keys that moved 5 s after the switch).
 */
import { ask, joinArgs, startCluster, startRole } from "../harness/cluster.js";
import { fillItems } from "./memory.js";
import { measureOneInFlight, type OneInFlightRow, oneloadBinary } from "./one-in-flight.js";

async function stateOf(indexPort: number, port: number): Promise<string> {
  const listing = await ask(indexPort, "stats nodes\r\n", "END\r\n");
  const role = new RegExp(`STAT localhost:${port}:role (\\w+)`).exec(listing)?.[1];
  const state = new RegExp(`STAT localhost:${port}:state (\\w+)`).exec(listing)?.[1];
  return `${role}/${state}`;
}

const itemsOf = async (port: number): Promise<number> =>
  Number(/STAT curr_items (\d+)/.exec(await ask(port, "stats\r\n", "END\r\n"))?.[1] ?? 0);

export async function addPartitionBench(items: number, seconds: number): Promise<void> {
  const bin = oneloadBinary();
  const cluster = await startCluster(1);
  const proxy = await startRole("proxy", joinArgs(cluster.index.port));
  const added = await startRole("node", joinArgs(cluster.index.port));
  try {
    const t0 = performance.now();
    const { socket } = await fillItems(cluster.master.port, items);
    socket.destroy();
    const fillSeconds = (performance.now() - t0) / 1000;
    const target = { name: "proxy", port: proxy.port, pids: [proxy.pid, cluster.master.pid] };
    const before = await measureOneInFlight(bin, target, seconds, 50);
    // The add starts once oneload's warm-up second is over.
    const duringFrom = performance.now();
    const during = measureOneInFlight(bin, target, seconds, 50);
    await new Promise((r) => setTimeout(r, 1500));
    const started = performance.now();
    const reply = await ask(cluster.index.port, `node role localhost ${added.port} master 1 1\r\n`);
    if (reply !== "OK\r\n") throw new Error(`node role: ${reply.trim()}`);
    while ((await stateOf(cluster.index.port, added.port)) !== "master/active") {
      if (performance.now() - started > 600_000)
        throw new Error("the partition was not active in 10 minutes");
      await new Promise((r) => setTimeout(r, 50));
    }
    const activeAt = performance.now();
    const addSeconds = (activeAt - started) / 1000;
    // When the old master has dropped what moved (5 s after the switch), polled from the switch on.
    const dropped = (async () => {
      while (performance.now() - activeAt < 60_000) {
        if ((await itemsOf(cluster.master.port)) <= items / 2 + items / 20)
          return (performance.now() - activeAt) / 1000;
        await new Promise((r) => setTimeout(r, 100));
      }
      return Number.NaN;
    })();
    const whileAdding: OneInFlightRow = await during;
    const copied = await itemsOf(added.port);
    // The cleanup window measures from 4.5 s after the switch (oneload's warm-up second first); the
    // window during the add measured from 1 s to 1 + S s after it started.
    const cleanupOverlaps = duringFrom + (1 + seconds) * 1000 > activeAt + 4500;
    await new Promise((r) => setTimeout(r, Math.max(0, activeAt + 3500 - performance.now())));
    const cleanFrom = (performance.now() - activeAt) / 1000 + 1;
    const whileCleaning: OneInFlightRow = await measureOneInFlight(bin, target, seconds, 50);
    const droppedAfter = await dropped;
    console.log(
      `\nadding a partition: ${items.toLocaleString("en-US")} items of 100 bytes on one master (+ slave), filled in ${fillSeconds.toFixed(1)} s`,
    );
    console.log(
      `  partition 1 active ${addSeconds.toFixed(1)} s after node role; it holds ${copied.toLocaleString("en-US")} items (${Math.round(copied / addSeconds).toLocaleString("en-US")} items/s)`,
    );
    // oneload measures from 1 s after its start; the add began 1.5 s after it.
    if (addSeconds + 0.5 > seconds)
      console.log(`  note: the add outlasted the ${seconds} s measured during it (--duration to cover it)`);
    console.log(
      Number.isNaN(droppedAfter)
        ? "  the old master had not dropped the moved keys 60 s after the switch"
        : `  the old master had dropped the moved keys ${droppedAfter.toFixed(1)} s after the switch`,
    );
    if (cleanupOverlaps)
      console.log(
        "  note: the window during the add also covered the cleanup (a shorter --duration separates them)",
      );
    for (const [name, r] of [
      ["before", before],
      ["during", whileAdding],
      [`${cleanFrom.toFixed(1)}-${(cleanFrom + seconds).toFixed(1)} s after the switch`, whileCleaning],
    ] as const) {
      console.log(
        `  clients ${name}: ${Math.round(r.opsPerSecond).toLocaleString("en-US")} ops/s, p50 ${r.p50us} µs, p99 ${r.p99us} µs, ${r.errors} errors`,
      );
    }
  } finally {
    await Promise.all([proxy.kill("SIGTERM"), added.kill("SIGTERM")]);
    await cluster.stop();
  }
}
