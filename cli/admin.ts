/**
 * `flare admin`: the operations Flare operators did with telnet and flare-tool, against a running
 * cluster. It talks to the index (`--index host:port`) and, for ping, dump and the progress of
 * add-slave and add-partition, to the nodes themselves.
 */
import { readFileSync } from "node:fs";
import { connect } from "node:net";
import { TOKEN_ENV, tokenFrom } from "../common/cluster-secret.js";
import { parseConfigText } from "../common/config.js";
import { ConfigError, FlareError } from "../common/errors.js";
import { authenticate, ClusterSecret, type Credentials } from "../protocol/cluster-auth.js";
import { LineClient, LineClientError, oneLine, untilEnd } from "../protocol/line-client.js";
import { ROLES, STATES } from "../protocol/node-map.js";

export const ADMIN_USAGE = `usage: flare admin [--index host:port] [--cluster-token T | -f FILE] [--json] <command>

The index is 127.0.0.1:12120 unless --index or FLARE_INDEX says otherwise. The cluster's secret
comes from --cluster-token, else the cluster-token key of a config file (-f), else ${TOKEN_ENV};
without one flare admin speaks open mode (an index with a token then refuses its changes).

commands:
  stats nodes                          the index and its node map as a table, with each node's
                                       items and each partition's keys (--json: an object)
  role HOST PORT ROLE [BALANCE [PARTITION]]
                                       set a node's role: master, slave or proxy
  state HOST PORT STATE                set a node's state: active, down or ready
  remove HOST PORT                     forget a node that is down
  add-slave HOST PORT PARTITION [BALANCE]
                                       attach a running proxy node as a slave of PARTITION with
                                       balance 0, wait while it is rebuilt from the master (with
                                       progress), then raise its balance (default 1)
  add-partition HOST PORT [BALANCE]    make a running proxy node master of a new partition: it
                                       copies its keys from every master (with progress) and
                                       takes them over once the index activates it
  ping [HOST PORT]                     ping one node, or the index and every node in the map
  dump HOST PORT [PARTITION PARTITIONS]
                                       every item of a node as set commands (replayable with
                                       nc); --json: one JSON object per item, values in base64`;

const TIMEOUT_MS = 5000;
const CRLF = Buffer.from("\r\n");

export interface NodeRow {
  node: string;
  host: string;
  port: number;
  role: string;
  state: string;
  partition: number;
  balance: number;
  threadType: number;
  /** Items the node holds (its `curr_items`); absent when it is down or did not answer. */
  items?: number;
}

/** `stats nodes` lines (five STAT lines per node) as rows, in the index's order. */
export function parseStatsNodes(lines: readonly string[]): NodeRow[] {
  const rows = new Map<string, NodeRow>();
  for (const line of lines) {
    const m = /^STAT (.+):(\d+):(\w+) (.*)$/.exec(line);
    if (m === null) continue;
    const [, host, port, field, value] = m as unknown as [string, string, string, string, string];
    const node = `${host}:${port}`;
    let row = rows.get(node);
    if (row === undefined) {
      row = { node, host, port: Number(port), role: "", state: "", partition: -1, balance: 0, threadType: 0 };
      rows.set(node, row);
    }
    if (field === "role") row.role = value;
    else if (field === "state") row.state = value;
    else if (field === "partition") row.partition = Number(value);
    else if (field === "balance") row.balance = Number(value);
    else if (field === "thread_type") row.threadType = Number(value);
  }
  return [...rows.values()];
}

/**
 * A fixed-width table, as an operator reads it in a terminal. The index that answered comes first:
 * Flare's `stats nodes` lists storage nodes and proxies only.
 */
export function nodesTable(index: string, rows: readonly NodeRow[]): string {
  const head = ["NODE", "ROLE", "STATE", "PARTITION", "BALANCE", "THREAD", "ITEMS"];
  const cells = [
    [index, "index", "active", "-", "-", "-", "-"],
    ...rows.map((r) => [
      r.node,
      r.role,
      r.state,
      String(r.partition),
      String(r.balance),
      String(r.threadType),
      r.items === undefined ? "-" : String(r.items),
    ]),
  ];
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] as string).length)));
  const line = (c: string[]) =>
    c
      .map((v, i) => v.padEnd(widths[i] as number))
      .join("  ")
      .trimEnd();
  const partitions = keysPerPartition(rows);
  const footer = partitions.every((p) => p.keys === undefined)
    ? []
    : ["", `keys per partition: ${partitions.map((p) => `${p.partition}: ${p.keys ?? "-"}`).join("  ")}`];
  return [line(head), ...cells.map(line), ...footer].join("\n");
}

/** Each partition's keys, as its master counts them (a partition being added: what it copied so far). */
export function keysPerPartition(
  rows: readonly NodeRow[],
): { partition: number; master: string; state: string; keys: number | undefined }[] {
  return rows
    .filter((r) => r.role === "master" && r.partition >= 0)
    .sort((a, b) => a.partition - b.partition)
    .map((r) => ({ partition: r.partition, master: r.node, state: r.state, keys: r.items }));
}

type Ask = (
  host: string,
  port: number,
  command: string,
  until?: (line: string) => boolean,
) => Promise<string[]>;

/** With a token every connection proves it; without one flare admin is a plain client (open mode). */
const asker =
  (credentials: Credentials | undefined): Ask =>
  (host, port, command, until = untilEnd) =>
    LineClient.ask(host, port, command, until, TIMEOUT_MS, credentials);

function hostPort(text: string, what: string): { host: string; port: number } {
  const m = /^(.+):(\d+)$/.exec(text);
  if (m === null || Number(m[2]) > 65535)
    throw new ConfigError(`${what}: expected host:port (got '${text}')`);
  return { host: m[1] as string, port: Number(m[2]) };
}

const int = (text: string | undefined, what: string): number => {
  if (text === undefined || !/^-?\d+$/.test(text))
    throw new ConfigError(`${what}: expected a number (got '${text ?? ""}')`);
  return Number(text);
};

/** A command the index refused: its reply line is the message. */
class Refused extends FlareError {
  constructor(reply: string) {
    super("UNAVAILABLE", reply);
  }
}

const io = {
  out: (text: string): void => void process.stdout.write(text),
  err: (text: string): void => void process.stderr.write(text),
  /** Progress goes on one redrawn line in a terminal, as plain lines otherwise. */
  tty: process.stderr.isTTY === true,
};

export async function runAdmin(argv: string[]): Promise<number> {
  try {
    return await admin(argv);
  } catch (err) {
    if (!(err instanceof Refused || err instanceof LineClientError)) throw err;
    io.err(
      `flare admin: ${err instanceof LineClientError ? `cannot reach a server: ${err.message}` : err.message}\n`,
    );
    return 1;
  }
}

async function admin(argv: string[]): Promise<number> {
  let index = process.env.FLARE_INDEX ?? "127.0.0.1:12120";
  let json = false;
  let token: string | undefined;
  let file: string | undefined;
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === "--index") index = argv[++i] ?? "";
    else if (a === "--json") json = true;
    else if (a === "--cluster-token") token = argv[++i] ?? "";
    else if (a === "-f" || a === "--config") file = argv[++i] ?? "";
    else if (a === "--help" || a === "-h") {
      io.out(`${ADMIN_USAGE}\n`);
      return 0;
    } else args.push(a);
  }
  const idx = hostPort(index, "--index");
  if (token === undefined && file !== undefined) token = tokenInFile(file);
  const secret = new ClusterSecret(tokenFrom(token));
  const credentials: Credentials | undefined = secret.open ? undefined : { secret, role: "admin" };
  const ask = asker(credentials);
  const [command, ...rest] = args;
  const nodes = async () => parseStatsNodes(await ask(idx.host, idx.port, "stats nodes"));
  const expectOk = async (line: string): Promise<void> => {
    const [reply] = await ask(idx.host, idx.port, line, oneLine);
    if (reply !== "OK") throw new Refused(`${line}: ${reply ?? "no reply"}`);
  };
  const target = () => {
    if (rest[0] === undefined) throw new ConfigError(`${command}: needs HOST PORT (see flare admin --help)`);
    return { host: rest[0], port: int(rest[1], "PORT") };
  };

  switch (command) {
    case "stats":
    case "nodes": {
      if (command === "stats" && rest[0] !== "nodes") break;
      const rows = await nodes();
      await Promise.all(
        rows
          .filter((r) => r.state !== "down")
          .map(async (r) => {
            const items = Number(
              (await nodeStats(ask, r.host, r.port).catch(() => undefined))?.get("curr_items"),
            );
            if (Number.isInteger(items)) r.items = items;
          }),
      );
      const name = `${idx.host}:${idx.port}`;
      io.out(
        `${json ? JSON.stringify({ index: name, nodes: rows, partitions: keysPerPartition(rows) }, null, 2) : nodesTable(name, rows)}\n`,
      );
      return 0;
    }
    case "role": {
      const { host, port } = target();
      const role = rest[2] ?? "";
      if (!(ROLES as readonly string[]).includes(role))
        throw new ConfigError(`ROLE: one of ${ROLES.join(", ")}`);
      const balance = rest[3] === undefined ? "" : ` ${int(rest[3], "BALANCE")}`;
      const partition = rest[4] === undefined ? "" : ` ${int(rest[4], "PARTITION")}`;
      await expectOk(`node role ${host} ${port} ${role}${balance}${partition}`);
      io.out("OK\n");
      return 0;
    }
    case "state": {
      const { host, port } = target();
      const state = rest[2] ?? "";
      if (!(STATES as readonly string[]).includes(state))
        throw new ConfigError(`STATE: one of ${STATES.join(", ")}`);
      await expectOk(`node state ${host} ${port} ${state}`);
      io.out("OK\n");
      return 0;
    }
    case "remove": {
      const { host, port } = target();
      await expectOk(`node remove ${host} ${port}`);
      io.out("OK\n");
      return 0;
    }
    case "add-slave":
      return addSlave(
        { idx, nodes, expectOk, ask },
        target(),
        int(rest[2], "PARTITION"),
        rest[3] === undefined ? 1 : int(rest[3], "BALANCE"),
      );
    case "add-partition":
      return addPartition(
        { idx, nodes, expectOk, ask },
        target(),
        rest[2] === undefined ? 1 : int(rest[2], "BALANCE"),
      );
    case "ping":
      return ping(idx, rest.length === 0 ? undefined : target(), nodes, json, ask);
    case "dump": {
      const { host, port } = target();
      const partition = rest[2] === undefined ? undefined : int(rest[2], "PARTITION");
      const size = rest[3] === undefined ? undefined : int(rest[3], "PARTITIONS");
      if ((partition === undefined) !== (size === undefined))
        throw new ConfigError("dump: give both PARTITION and PARTITIONS, or neither");
      const dumpArgs = partition === undefined ? "" : ` 0 ${partition} ${size}`;
      // A dump is cluster traffic even in open mode, where the exchange takes any proof.
      return dump(host, port, dumpArgs, json, { secret, role: "admin" });
    }
  }
  io.err(`flare admin: unknown command '${args.join(" ")}'\n${ADMIN_USAGE}\n`);
  return 2;
}

async function ping(
  idx: { host: string; port: number },
  one: { host: string; port: number } | undefined,
  nodes: () => Promise<NodeRow[]>,
  json: boolean,
  ask: Ask,
): Promise<number> {
  const targets = one
    ? [{ name: `${one.host}:${one.port}`, ...one }]
    : [
        { name: `index ${idx.host}:${idx.port}`, ...idx },
        ...(await nodes()).map((r) => ({ name: r.node, host: r.host, port: r.port })),
      ];
  const results = await Promise.all(
    targets.map(async (t) => {
      const started = performance.now();
      try {
        const [reply] = await ask(t.host, t.port, "ping", oneLine);
        const ms = performance.now() - started;
        return { node: t.name, ok: reply === "OK", ms: Number(ms.toFixed(2)), reply: reply ?? "" };
      } catch (err) {
        return { node: t.name, ok: false, ms: undefined, reply: (err as Error).message };
      }
    }),
  );
  if (json) io.out(`${JSON.stringify(results, null, 2)}\n`);
  else
    for (const r of results)
      io.out(`${r.ok ? "OK  " : "FAIL"}  ${r.node}  ${r.ok ? `${r.ms} ms` : r.reply}\n`);
  return results.every((r) => r.ok) ? 0 : 1;
}

/** The cluster-token key of a Flare-style config file (its other keys are the roles' business). */
function tokenInFile(file: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
  }
  return parseConfigText(text, file).get("cluster-token");
}

async function nodeStats(ask: Ask, host: string, port: number): Promise<Map<string, string>> {
  const stats = new Map<string, string>();
  for (const line of await ask(host, port, "stats")) {
    const m = /^STAT (\S+) (.*)$/.exec(line);
    if (m) stats.set(m[1] as string, m[2] as string);
  }
  return stats;
}

/**
 * Flare's slave addition by hand, as one command: the node (running, registered as a proxy) is made
 * a slave with balance 0, so no read goes to it while it copies the master; once the index has it
 * active, its balance is raised.
 */
async function addSlave(
  cluster: Cluster,
  node: { host: string; port: number },
  partition: number,
  balance: number,
): Promise<number> {
  const { idx, nodes, expectOk, ask } = cluster;
  const { name, before } = await spareNode(cluster, node);
  const master = before.find((r) => r.role === "master" && r.partition === partition && r.state === "active");
  if (master === undefined) throw new Refused(`partition ${partition} has no active master`);
  await expectOk(`node role ${node.host} ${node.port} slave 0 ${partition}`);
  io.err(`${name}: slave of partition ${partition} (master ${master.node}), rebuilding...\n`);
  const started = Date.now();
  await showCopy(name, nodes, ["active"], async () => {
    const [mine, theirs] = await Promise.all([itemsOn(ask, node), itemsOn(ask, master)]);
    return [mine, theirs];
  });
  io.err(
    `${name}: rebuilt in ${((Date.now() - started) / 1000).toFixed(1)} s; raising its balance to ${balance}\n`,
  );
  if (balance > 0) await expectOk(`node role ${node.host} ${node.port} slave ${balance} ${partition}`);
  io.out(`${nodesTable(`${idx.host}:${idx.port}`, await nodes())}\n`);
  return 0;
}

const itemsOn = async (ask: Ask, node: { host: string; port: number }): Promise<number> =>
  Number(
    (await nodeStats(ask, node.host, node.port).catch(() => new Map<string, string>())).get("curr_items") ??
      0,
  );

/**
 * Shows a copy's progress (items it has of the items it will have, from `counts`) until the node
 * reaches one of the states `until`; returns that state. A node that goes down or leaves fails it.
 */
async function showCopy(
  name: string,
  nodes: () => Promise<NodeRow[]>,
  until: string[],
  counts: () => Promise<[have: number, total: number]>,
): Promise<string> {
  let lastShown = -1;
  for (;;) {
    const now = (await nodes()).find((r) => r.node === name);
    if (now === undefined) throw new Refused(`${name} left the map during its copy`);
    if (until.includes(now.state)) {
      if (io.tty) io.err(`\r${progressBar(100)} 100%${" ".repeat(30)}\n`);
      return now.state;
    }
    if (now.state === "down" || now.role === "proxy")
      throw new Refused(`${name} gave up its copy (${now.role}/${now.state})`);
    const [have, total] = await counts();
    const pct = total > 0 ? Math.min(100, Math.floor((have / total) * 100)) : 0;
    if (io.tty) io.err(`\r${progressBar(pct)} ${pct}%  ${have}/${total} items`);
    else if (pct >= lastShown + 10 || lastShown < 0) {
      io.err(`${pct}%  ${have}/${total} items\n`);
      lastShown = pct;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * Adds a partition, Flare's way (`node role HOST PORT master BALANCE N`, N the partitions now) with
 * progress: the new master copies from every master about 1/(N+1) of its items. The index
 * activates it when it is ready (partition-auto-activate); otherwise it is left ready for
 * `state HOST PORT active`.
 */
async function addPartition(
  cluster: Cluster,
  node: { host: string; port: number },
  balance: number,
): Promise<number> {
  const { idx, nodes, expectOk, ask } = cluster;
  const { name, before } = await spareNode(cluster, node);
  const masters = before.filter((r) => r.role === "master" && (r.state === "active" || r.state === "down"));
  const partition = masters.length;
  await expectOk(`node role ${node.host} ${node.port} master ${balance} ${partition}`);
  io.err(
    `${name}: master of new partition ${partition}, copying from ${masters.map((m) => m.node).join(", ")}...\n`,
  );
  const started = Date.now();
  const state = await showCopy(name, nodes, ["ready", "active"], async () => {
    const held = await Promise.all(masters.map((m) => itemsOn(ask, m)));
    const total = Math.round(held.reduce((a, b) => a + b, 0) / (partition + 1));
    return [await itemsOn(ask, node), total];
  });
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (state === "ready")
    io.err(
      `${name}: copied in ${seconds} s and ready; activate it with: flare admin state ${node.host} ${node.port} active\n`,
    );
  else io.err(`${name}: partition ${partition} active after ${seconds} s\n`);
  io.out(`${nodesTable(`${idx.host}:${idx.port}`, await nodes())}\n`);
  return 0;
}

/** The index an operation talks to, and how it asks and changes things there. */
interface Cluster {
  idx: { host: string; port: number };
  nodes: () => Promise<NodeRow[]>;
  expectOk: (line: string) => Promise<void>;
  ask: Ask;
}

/** A node that joined and has no role yet (a proxy), with the map it is in; refused otherwise. */
async function spareNode(
  { idx, nodes }: Cluster,
  node: { host: string; port: number },
): Promise<{ name: string; before: NodeRow[] }> {
  const name = `${node.host}:${node.port}`;
  const before = await nodes();
  const row = before.find((r) => r.node === name);
  if (row === undefined)
    throw new Refused(`${name} is not in the map of ${idx.host}:${idx.port}: start it first`);
  if (row.role !== "proxy") throw new Refused(`${name} is already a ${row.role}`);
  return { name, before };
}

function progressBar(pct: number): string {
  const width = 30;
  const done = Math.round((pct / 100) * width);
  return `[${"#".repeat(done)}${".".repeat(width - done)}]`;
}

/**
 * Streams a node's `dump` (VALUE <key> <flags> <bytes> <version> <expire> + data ... END) out as
 * set commands, or JSON lines. Values are binary: the reply is parsed as bytes, never as text.
 */
function dump(
  host: string,
  port: number,
  args: string,
  json: boolean,
  credentials: Credentials,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    let buf: Buffer = Buffer.alloc(0);
    let count = 0;
    const done = (code: number) => {
      socket.destroy();
      io.err(`${count} items\n`);
      resolve(code);
    };
    socket.setTimeout(TIMEOUT_MS, () => {
      socket.destroy();
      reject(new Refused(`${host}:${port}: the dump stalled`));
    });
    socket.on("error", (err) => reject(new Refused(`${host}:${port}: ${err.message}`)));
    socket.on("close", () => reject(new Refused(`${host}:${port}: connection closed before END`)));
    socket.on("connect", () => {
      authenticate(socket, credentials, TIMEOUT_MS).then(
        () => {
          socket.on("data", onData);
          socket.write(`dump${args}\r\n`);
        },
        (err: Error) => reject(new Refused(`${host}:${port}: ${err.message}`)),
      );
    });
    const onData = (d: Buffer): void => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      let pos = 0;
      for (;;) {
        const nl = buf.indexOf(10, pos);
        if (nl < 0) break;
        const line = buf.toString("latin1", pos, nl).replace(/\r$/, "");
        if (line === "END") {
          done(0);
          return;
        }
        const m = /^VALUE (\S+) (\d+) (\d+) (\d+) (\d+)$/.exec(line);
        if (m === null) {
          socket.destroy();
          reject(new Refused(`${host}:${port}: ${line}`));
          return;
        }
        const [, key, flags, bytes, version, expire] = m as unknown as string[];
        const end = nl + 1 + Number(bytes);
        if (end + 2 > buf.length) break;
        const value = buf.subarray(nl + 1, end);
        const item = json
          ? `${JSON.stringify({ key, flags: Number(flags), version, expire: Number(expire), value: value.toString("base64") })}\n`
          : Buffer.concat([Buffer.from(`set ${key} ${flags} ${expire} ${bytes}\r\n`, "latin1"), value, CRLF]);
        // A slow reader (a pipe to nc, say) holds the node back instead of filling memory.
        if (!process.stdout.write(item) && !socket.isPaused()) {
          socket.pause();
          process.stdout.once("drain", () => socket.resume());
        }
        count++;
        pos = end + 2;
      }
      buf = buf.subarray(pos);
    };
  });
}
