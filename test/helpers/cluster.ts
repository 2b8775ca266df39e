/** Small clusters of real processes for replication and failover tests. */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { joinArgs as benchJoinArgs } from "../../harness/cluster.js";
import { type NodeProcess, startIndexProcess, startNodeProcess, startRole } from "./processes.js";
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
export async function dumpOf(port: number, token?: string, host?: string): Promise<Map<string, string>> {
  const c = await RawClient.open(port, host);
  const auth = await c.authenticate(token);
  if (auth !== "OK\r\n") throw new Error(`dump: cluster auth refused: ${auth}`);
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

/** An index command on a connection that proved `token` (open mode when undefined). */
export async function peerAdmin(port: number, token: string | undefined, command: string): Promise<string> {
  const c = await RawClient.open(port);
  try {
    const auth = await c.authenticate(token);
    if (auth !== "OK\r\n") throw new Error(`cluster auth refused: ${auth}`);
    return await c.ask(`${command}\r\n`, command.startsWith("stats") ? "END\r\n" : "\r\n");
  } finally {
    c.close();
  }
}

/** Makes `master` master of partition 0 and `slave` its slave (balance 2), and waits for the rebuild. */
export async function pairUp(
  index: NodeProcess,
  token: string | undefined,
  master: NodeProcess,
  slave: NodeProcess,
): Promise<void> {
  for (const command of [
    `node role localhost ${master.port} master 1 0`,
    `node role localhost ${slave.port} slave 2 0`,
  ]) {
    const reply = await peerAdmin(index.port, token, command);
    if (reply !== "OK\r\n") throw new Error(`${command}: ${reply}`);
  }
  await until("the slave to be rebuilt", async () => (await nodeState(index, slave.port)) === "slave/active");
}

export interface SeedLayout {
  index: NodeProcess;
  master: NodeProcess;
  slave: NodeProcess;
  proxy: NodeProcess;
  /** A change sent to the index as an authenticated peer; throws unless it answers OK. */
  change(command: string): Promise<void>;
  stop(): Promise<void>;
}

/**
 * The seed's layout (index 1 s / 3, master balance 1, slave balance 2, a proxy), every role with
 * `token` (open mode when undefined); the slave is rebuilt and active when this resolves.
 */
export async function seedLayout(
  token: string | undefined,
  nodeArgs: string[] = [],
  indexArgs: string[] = [],
): Promise<SeedLayout> {
  const secret = token === undefined ? [] : ["--cluster-token", token];
  const index = await startIndex([...secret, "--http-port", "0", ...indexArgs]);
  const master = await startNodeProcess(joinArgs(index, [...secret, ...nodeArgs]));
  const slave = await startNodeProcess(joinArgs(index, [...secret, ...nodeArgs]));
  const change = async (command: string): Promise<void> => {
    const reply = await peerAdmin(index.port, token, command);
    if (reply !== "OK\r\n") throw new Error(`${command}: ${reply}`);
  };
  await pairUp(index, token, master, slave);
  const proxy = await startRole("proxy", "proxy started", joinArgs(index, secret));
  await until(
    "the proxy to take writes",
    async () => (await admin(proxy.port, "set warm 0 0 1\r\nx")) === "STORED\r\n",
  );
  return {
    index,
    master,
    slave,
    proxy,
    change,
    async stop() {
      await Promise.all([proxy, master, slave].map((p) => p.stop()));
      await index.stop();
    },
  };
}
