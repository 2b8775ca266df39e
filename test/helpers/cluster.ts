/** Small clusters of real processes for replication and failover tests. */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { joinArgs as benchJoinArgs } from "../../bench/cluster.js";
import { type NodeProcess, startIndexProcess } from "./processes.js";
import { RawClient } from "./raw-client.js";

export async function admin(port: number, command: string, suffix = "\r\n"): Promise<string> {
  const c = await RawClient.open(port);
  try {
    return await c.ask(`${command}\r\n`, suffix);
  } finally {
    c.close();
  }
}

export async function until(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startIndex(extra: string[] = []): Promise<NodeProcess> {
  const dataDir = mkdtempSync(join(tmpdir(), "flare-index-"));
  return startIndexProcess([
    "--data-dir",
    dataDir,
    "--monitor-interval",
    "1",
    "--monitor-threshold",
    "3",
    ...extra,
  ]);
}

export const joinArgs = (index: NodeProcess, extra: string[] = []): string[] =>
  benchJoinArgs(index.port, extra);

export async function nodeState(index: NodeProcess, port: number): Promise<string> {
  const listing = await admin(index.port, "stats nodes", "END\r\n");
  const role = new RegExp(`STAT localhost:${port}:role (\\w+)`).exec(listing)?.[1];
  const state = new RegExp(`STAT localhost:${port}:state (\\w+)`).exec(listing)?.[1];
  return `${role}/${state}`;
}

/** Attaches `slave` to partition 0 and waits until it has rebuilt itself and is active. */
export async function attachSlave(index: NodeProcess, slave: NodeProcess, balance = 1): Promise<void> {
  const reply = await admin(index.port, `node role localhost ${slave.port} slave ${balance} 0`);
  if (reply !== "OK\r\n") throw new Error(`node role: ${reply}`);
  await until(
    "the slave to be rebuilt",
    async () => (await nodeState(index, slave.port)) === "slave/active",
    60_000,
  );
}

/** Every live item of a node as key -> "version value", read with Flare's dump. */
export async function dumpOf(port: number): Promise<Map<string, string>> {
  const c = await RawClient.open(port);
  c.send("dump\r\n");
  let out = "";
  for (;;) {
    out += await c.readUntil("\r\n", 60_000);
    if (out.endsWith("\r\nEND\r\n") || out === "END\r\n") break;
  }
  c.close();
  const items = new Map<string, string>();
  let pos = 0;
  while (pos < out.length) {
    const nl = out.indexOf("\r\n", pos);
    const line = out.slice(pos, nl);
    if (line === "END") break;
    const [, key, , bytes, version] = line.split(" ");
    const value = out.slice(nl + 2, nl + 2 + Number(bytes));
    items.set(key as string, `${version} ${value}`);
    pos = nl + 2 + Number(bytes) + 2;
  }
  return items;
}
