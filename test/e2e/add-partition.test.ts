/**
 * Adding partitions while the cluster serves (Flare's `node role <host> <port> master 1 N`): the
 * new master copies the keys that move to it from every master while those masters send it each
 * write of those keys, reports ready, and the index activates it; then every proxy and node moves
 * to one more partition. Under a set/delete/get load through the proxy's memcached front and its
 * HTTP API, checked against a model of acknowledged writes, key by key.
 */
import { afterAll, describe, expect, it, onTestFinished } from "vitest";
import { keyHash, partitioning } from "../../protocol/key-hash.js";
import {
  admin,
  dumpOf,
  joinArgs,
  nodeState,
  pairUp,
  peerAdmin,
  startIndex,
  until,
} from "../helpers/cluster.js";
import { type NodeProcess, startNodeProcess, startRole, stopAll } from "../helpers/processes.js";
import { RawClient } from "../helpers/raw-client.js";
import { startWorker } from "../helpers/worker.js";

afterAll(stopAll);

const KEYS = 3000;

/** One client's three operations; a string is the failure as the client saw it. */
interface ModelClient {
  set(key: string, value: string): Promise<true | string>;
  delete(key: string): Promise<true | string>;
  /** The value, null for a miss, or the failure. */
  get(key: string): Promise<{ value: string | null } | string>;
  close(): void;
}

async function memcachedClient(port: number): Promise<ModelClient> {
  const conn = await RawClient.open(port);
  return {
    async set(key, value) {
      const reply = await conn.ask(`set ${key} 0 0 ${value.length}\r\n${value}\r\n`);
      return reply === "STORED\r\n" || reply.trim();
    },
    async delete(key) {
      const reply = await conn.ask(`delete ${key}\r\n`);
      return reply === "DELETED\r\n" || reply === "NOT_FOUND\r\n" || reply.trim();
    },
    async get(key) {
      const reply = await conn.ask(`get ${key}\r\n`, "END\r\n");
      if (reply === "END\r\n") return { value: null };
      const m = /^VALUE \S+ 0 (\d+)\r\n/.exec(reply);
      if (m === null) return reply.trim();
      const at = (m[0] as string).length;
      return { value: reply.slice(at, at + Number(m[1])) };
    },
    close: () => conn.close(),
  };
}

function httpClient(origin: string): ModelClient {
  const url = (key: string) => `${origin}/v1/kv/${key}`;
  return {
    async set(key, value) {
      const res = await fetch(url(key), { method: "PUT", body: value });
      return res.status === 200 || `${res.status} ${await res.text()}`;
    },
    async delete(key) {
      const res = await fetch(url(key), { method: "DELETE" });
      return res.status === 204 || res.status === 404 || `${res.status} ${await res.text()}`;
    },
    async get(key) {
      const res = await fetch(url(key));
      const body = await res.text();
      if (res.status === 404) return { value: null };
      return res.status === 200 ? { value: body } : `${res.status} ${body}`;
    },
    close: () => {},
  };
}

/**
 * Clients that each own every n-th key (n clients), one request in flight: a key's acknowledged writes
 * come from one client in order, so the model is exact. Sets, deletes, and gets checked against
 * the model.
 */
class ModelLoad {
  /** Last acknowledged value of each key written (null: deleted). */
  readonly model = new Map<string, string | null>();
  readonly failed: string[] = [];
  readonly wrong: string[] = [];
  ops = 0;
  /** Requests each client made. */
  readonly perClient: number[] = [];
  private running = true;
  private readonly done: Promise<void>[] = [];

  /** Starts the clients: each a memcached connection (a port) or an HTTP API (an origin). */
  async start(fronts: (number | string)[]): Promise<void> {
    for (const [id, front] of fronts.entries()) {
      const client = typeof front === "string" ? httpClient(front) : await memcachedClient(front);
      this.done.push(this.run(client, id, fronts.length));
    }
  }

  private async run(client: ModelClient, id: number, clients: number): Promise<void> {
    let seed = id + 1;
    const next = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed >>> 8;
    };
    for (let i = 0; this.running; i++) {
      const key = `ap_${(next() % Math.floor(KEYS / clients)) * clients + id}`;
      const dice = next() % 10;
      this.ops++;
      this.perClient[id] = (this.perClient[id] ?? 0) + 1;
      if (dice < 6) {
        const value = `${id}-${i}-${"v".repeat(next() % 40)}`;
        const done = await client.set(key, value);
        if (done === true) this.model.set(key, value);
        else this.failed.push(`set ${key}: ${done}`);
      } else if (dice < 7) {
        const done = await client.delete(key);
        if (done === true) this.model.set(key, null);
        else this.failed.push(`delete ${key}: ${done}`);
      } else {
        const got = await client.get(key);
        const want = this.model.get(key);
        // A key never written may hold nothing or anything earlier runs left: only known keys count.
        if (want !== undefined && (typeof got === "string" || got.value !== want))
          this.wrong.push(`get ${key}: ${typeof got === "string" ? got : got.value} (want ${want})`);
      }
    }
    client.close();
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.done);
  }
}

/** The index's partitioning: which of `partitions` a key belongs to. */
const keys = partitioning(new Map());
const partitionOf = (key: string, partitions: number): number =>
  keys.resolver.resolve(keyHash(key, keys.algorithm), partitions);

interface Growth {
  /** Partitions to add, one after another. */
  add: number;
  /** Each new partition gets a slave: while its master copies, or once it is active. */
  slaves: "while-copying" | "after";
  /** flare-tools' way: poll `stats nodes` for ready, then `node state <host> <port> active`. */
  manual: boolean;
  /** One client goes through the Worker. */
  worker?: boolean;
}

interface Loaded {
  index: NodeProcess;
  master: NodeProcess;
  slave: NodeProcess;
  proxy: NodeProcess;
  load: ModelLoad;
  /** Arguments that make a node join this cluster. */
  nodeArgs: string[];
  state(p: NodeProcess): Promise<string>;
}

/**
 * The seed's pair (sync replication) and a proxy, with the load running for a second: three
 * clients on the proxy's memcached front and one on its HTTP API; with `worker`, one more through
 * the Worker (under wrangler), which follows the index's maps over HTTP.
 */
async function startLoaded(indexArgs: string[] = [], worker = false): Promise<Loaded> {
  const index = await startIndex([...indexArgs, "--http-port", "0"]);
  const nodeArgs = joinArgs(index, ["--replication-type", "sync", "--http-port", "0"]);
  const master = await startNodeProcess(nodeArgs);
  const slave = await startNodeProcess(nodeArgs);
  await pairUp(index, undefined, master, slave);
  const proxy = await startRole("proxy", "proxy started", joinArgs(index, ["--http-port", "0"]));
  await until(
    "the proxy to take writes",
    async () => (await admin(proxy.port, "set warm 0 0 1\r\nx")) === "STORED\r\n",
  );
  const fronts: (number | string)[] = [
    proxy.port,
    proxy.port,
    proxy.port,
    `http://127.0.0.1:${proxy.httpPort}`,
  ];
  if (worker) {
    const edge = await startWorker(`http://127.0.0.1:${index.httpPort}`);
    onTestFinished(edge.stop);
    await until(
      "the Worker to take writes",
      async () => (await httpClient(edge.url).set("warm", "x")) === true,
    );
    fronts.push(edge.url);
  }
  const load = new ModelLoad();
  await load.start(fronts);
  await new Promise((r) => setTimeout(r, 1000));
  return { index, master, slave, proxy, load, nodeArgs, state: (p) => nodeState(index, p.port) };
}

/**
 * The load stopped: no request failed and no get was wrong; every key as last acknowledged through
 * the proxy and on the master and slave of the partition that owns it (`masters[i]`, `slaves[i]`:
 * partition i); keys within 10% of even; every partition's nodes dropped the keys that moved on.
 */
async function verify(c: Loaded, masters: NodeProcess[], slaves: NodeProcess[], what: string): Promise<void> {
  const { load, proxy, master } = c;
  await load.stop();
  console.log(
    `${what}: ${load.ops} requests under load (per client ${load.perClient.join(", ")}); ${load.failed.length} failed, ${load.wrong.length} wrong gets`,
  );
  // Every client took part, the Worker's too.
  for (const n of load.perClient) expect(n).toBeGreaterThan(20);
  expect(load.failed).toEqual([]);
  expect(load.wrong).toEqual([]);
  expect(load.model.size).toBeGreaterThan(KEYS / 2);
  const conn = await RawClient.open(proxy.port);
  const wrong: string[] = [];
  for (const [key, want] of load.model) {
    const reply = await conn.ask(`get ${key}\r\n`, "END\r\n");
    const expected = want === null ? "END\r\n" : `VALUE ${key} 0 ${want.length}\r\n${want}\r\nEND\r\n`;
    if (reply !== expected) wrong.push(`${key}: ${reply.trim()} (want ${want})`);
  }
  conn.close();
  expect(wrong).toEqual([]);
  const partitions = masters.length;
  const held = await Promise.all([...masters, ...slaves].map((m) => dumpOf(m.port)));
  const misplaced: string[] = [];
  const perPartition = masters.map(() => 0);
  for (const [key, want] of load.model) {
    const owner = partitionOf(key, partitions);
    if (want !== null) perPartition[owner] = (perPartition[owner] ?? 0) + 1;
    for (const [copy, items] of [held[owner], held[partitions + owner]].entries()) {
      const item = items?.get(key);
      const value = item?.slice(item.indexOf(" ") + 1);
      if ((want === null && item !== undefined) || (want !== null && value !== want))
        misplaced.push(
          `${key} on the ${copy === 0 ? "master" : "slave"} of partition ${owner}: ${value} (want ${want})`,
        );
    }
  }
  expect(misplaced).toEqual([]);
  console.log(`${what}: keys per partition ${perPartition.join(", ")}`);
  const even = load.model.size / partitions;
  const live = perPartition.reduce((a, b) => a + b, 0);
  for (const n of perPartition) expect(Math.abs(n - live / partitions)).toBeLessThan(even * 0.1);
  // Asked as a cluster peer: a client's read of a key the node gave away is passed on to its owner.
  const leftOn = async (node: NodeProcess, partition: number): Promise<number> => {
    const gone = [...load.model.keys()].filter((k) => partitionOf(k, partitions) !== partition);
    const direct = await RawClient.open(node.port);
    expect(await direct.authenticate()).toBe("OK\r\n");
    let left = 0;
    for (let i = 0; i < gone.length; i += 100) {
      const reply = await direct.ask(`get ${gone.slice(i, i + 100).join(" ")}\r\n`, "END\r\n");
      left += reply.split("VALUE ").length - 1;
    }
    direct.close();
    return left;
  };
  // Every partition's nodes drop the keys that moved on: a few seconds after the map that moved
  // them (a late proxy may still read them there).
  for (let p = 0; p < partitions; p++)
    for (const node of new Set([masters[p], slaves[p]]))
      await until(
        `partition ${p}'s nodes to drop the keys that moved`,
        async () => (await leftOn(node as NodeProcess, p)) === 0,
        30_000,
      );
  const moved = [...load.model.keys()].filter((k) => partitionOf(k, partitions) !== 0);
  // The first partition's master takes no write of a key it gave away: a peer's is refused, a
  // client's is passed on to the key's owner.
  const key = moved[0];
  if (key !== undefined) {
    expect(await peerAdmin(master.port, undefined, `set ${key} 0 0 1\r\nz`)).toMatch(
      /^SERVER_ERROR not a master/,
    );
    expect(await admin(master.port, `set ${key} 0 0 1\r\nz`)).toBe("STORED\r\n");
    const owner = masters[partitionOf(key, partitions)] as NodeProcess;
    expect(await admin(owner.port, `get ${key}`, "END\r\n")).toBe(`VALUE ${key} 0 1\r\nz\r\nEND\r\n`);
  }
}

/** Adds `g.add` partitions to a loaded cluster as asked; each partition's master and slave. */
async function grow(
  c: Loaded,
  g: Growth,
): Promise<{ masters: NodeProcess[]; slaves: NodeProcess[]; timings: number[] }> {
  const { index, master, slave, nodeArgs, state } = c;
  const masters: NodeProcess[] = [master];
  const slaves: NodeProcess[] = [slave];
  const timings: number[] = [];
  for (let partition = 1; partition <= g.add; partition++) {
    const added = await startNodeProcess(nodeArgs);
    const second = await startNodeProcess(nodeArgs);
    const started = Date.now();
    expect(await admin(index.port, `node role localhost ${added.port} master 1 ${partition}`)).toBe("OK\r\n");
    if (g.slaves === "while-copying")
      expect(await admin(index.port, `node role localhost ${second.port} slave 1 ${partition}`)).toBe(
        "OK\r\n",
      );
    if (g.manual) {
      await until(
        `partition ${partition} to be ready`,
        async () => (await state(added)) === "master/ready",
        60_000,
      );
      // Ready is not serving: the proxy still routes over the old partitions until activation.
      await new Promise((r) => setTimeout(r, 300));
      expect(await state(added)).toBe("master/ready");
      expect(await admin(index.port, `node state localhost ${added.port} active`)).toBe("OK\r\n");
    }
    await until(
      `partition ${partition} to be active`,
      async () => (await state(added)) === "master/active",
      60_000,
    );
    timings.push(Date.now() - started);
    if (g.slaves === "after")
      expect(await admin(index.port, `node role localhost ${second.port} slave 1 ${partition}`)).toBe(
        "OK\r\n",
      );
    await until(
      `the slave of partition ${partition}`,
      async () => (await state(second)) === "slave/active",
      60_000,
    );
    masters.push(added);
    slaves.push(second);
    await new Promise((r) => setTimeout(r, 1000));
  }
  return { masters, slaves, timings };
}

/** The seed's pair, a proxy and a load; then `add` partitions as asked; then every check. */
async function growUnderLoad(g: Growth): Promise<void> {
  const c = await startLoaded(g.manual ? ["--partition-auto-activate", "off"] : [], g.worker);
  const { masters, slaves, timings } = await grow(c, g);
  await verify(
    c,
    masters,
    slaves,
    `add partition (${g.manual ? "manual" : "auto"} activation, slaves ${g.slaves}), 1 -> ${g.add + 1} partitions, each active ${timings.join(", ")} ms after its node role`,
  );
}

/**
 * One client per partition setting keys of that partition only, one request in flight: how long
 * each one's longest set took, and how many it got acknowledged.
 */
function partitionProbes(port: number, partitions: number) {
  let running = true;
  const stalls = Array.from({ length: partitions }, () => 0);
  const acked = Array.from({ length: partitions }, () => 0);
  const failed: string[] = [];
  const loops = stalls.map(async (_, p) => {
    const conn = await RawClient.open(port);
    for (let i = 0; running; i++) {
      const key = `probe_${p}_${i}`;
      if (partitionOf(key, partitions) !== p) continue;
      const t0 = performance.now();
      const reply = await conn.ask(`set ${key} 0 0 1\r\nx\r\n`);
      stalls[p] = Math.max(stalls[p] as number, performance.now() - t0);
      if (reply === "STORED\r\n") acked[p] = (acked[p] as number) + 1;
      else failed.push(`${key}: ${reply.trim()}`);
    }
    conn.close();
  });
  return {
    stalls,
    acked,
    failed,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

describe("adding partitions online", () => {
  it("grows 1 -> 2 -> 3 -> 4 partitions under load, slaves added after: no request fails, every key as acknowledged on its owner", async () => {
    await growUnderLoad({ add: 3, slaves: "after", manual: false });
  }, 240_000);

  it("as flare-tools does it (auto-activation off: ready, then node state active), a slave rebuilding meanwhile; one client through the Worker", async () => {
    await growUnderLoad({ add: 1, slaves: "while-copying", manual: true, worker: true });
  }, 120_000);

  /** A node made master of partition 1, its copy slowed to about 2 s (20 KB/s) so kills land while it runs. */
  async function startSlowCopy(c: Loaded): Promise<NodeProcess> {
    const node = await startNodeProcess([...c.nodeArgs, "--reconstruction-bwlimit", "20"]);
    expect(await admin(c.index.port, `node role localhost ${node.port} master 1 1`)).toBe("OK\r\n");
    await new Promise((r) => setTimeout(r, 700));
    expect(await c.state(node)).toBe("master/prepare");
    return node;
  }

  it("kill -9 of the new master mid-copy: nothing is lost, and adding another then succeeds", async () => {
    const c = await startLoaded();
    const doomed = await startSlowCopy(c);
    doomed.proc.kill("SIGKILL");
    await until(
      "the dead new master to be down",
      async () => (await c.state(doomed)) === "proxy/down",
      30_000,
    );
    const added = await startNodeProcess(c.nodeArgs);
    const second = await startNodeProcess(c.nodeArgs);
    expect(await admin(c.index.port, `node role localhost ${added.port} master 1 1`)).toBe("OK\r\n");
    await until("partition 1 to be active", async () => (await c.state(added)) === "master/active", 60_000);
    expect(await admin(c.index.port, `node role localhost ${second.port} slave 1 1`)).toBe("OK\r\n");
    await until("its slave", async () => (await c.state(second)) === "slave/active", 60_000);
    await new Promise((r) => setTimeout(r, 1000));
    await verify(c, [c.master, added], [c.slave, second], "new master killed mid-copy, then added again");
  }, 120_000);

  it("kill -9 of the old master mid-copy: its slave takes over and the copy starts again from it", async () => {
    const c = await startLoaded();
    const added = await startSlowCopy(c);
    c.master.proc.kill("SIGKILL");
    await until("the slave to be promoted", async () => (await c.state(c.slave)) === "master/active", 30_000);
    await until("partition 1 to be active", async () => (await c.state(added)) === "master/active", 60_000);
    // The copy was cut by the kill and taken up again from the promoted slave.
    expect(added.stderr()).toContain("retrying from the partition's master");
    // The promoted slave is partition 0's master now; each partition gets a new slave.
    const slave0 = await startNodeProcess(c.nodeArgs);
    const slave1 = await startNodeProcess(c.nodeArgs);
    expect(await admin(c.index.port, `node role localhost ${slave0.port} slave 1 0`)).toBe("OK\r\n");
    expect(await admin(c.index.port, `node role localhost ${slave1.port} slave 1 1`)).toBe("OK\r\n");
    for (const s of [slave0, slave1])
      await until("the new slaves", async () => (await c.state(s)) === "slave/active", 60_000);
    await new Promise((r) => setTimeout(r, 1000));
    await verify(
      { ...c, master: c.slave, slave: slave0 },
      [c.slave, added],
      [slave0, slave1],
      "old master killed mid-copy",
    );
  }, 120_000);

  it("the seed drill with 4 partitions: kill -9 of one master stalls only that partition's keys", async () => {
    const c = await startLoaded();
    const { masters, slaves } = await grow(c, { add: 3, slaves: "after", manual: false });
    const probes = partitionProbes(c.proxy.port, 4);
    await new Promise((r) => setTimeout(r, 1000));
    const before = [...probes.acked];
    masters[2]?.proc.kill("SIGKILL");
    await until(
      "partition 2's slave to be promoted",
      async () => (await c.state(slaves[2] as NodeProcess)) === "master/active",
    );
    await new Promise((r) => setTimeout(r, 1500));
    await probes.stop();
    console.log(
      `4 partitions, master of partition 2 killed: longest set per partition ${probes.stalls.map((ms) => Math.round(ms)).join(", ")} ms; acknowledged after the kill ${probes.acked.map((n, p) => n - (before[p] as number)).join(", ")}`,
    );
    expect(probes.failed).toEqual([]);
    // Every partition kept taking writes, the one that failed over too.
    for (let p = 0; p < 4; p++)
      expect((probes.acked[p] as number) - (before[p] as number)).toBeGreaterThan(50);
    // Partition 2 is its promoted slave alone now: it is checked as its own master and slave.
    const promoted = slaves[2] as NodeProcess;
    await verify(
      c,
      masters.map((m, p) => (p === 2 ? promoted : m)),
      slaves.map((s, p) => (p === 2 ? promoted : s)),
      "4 partitions, one master killed",
    );
  }, 240_000);
});
