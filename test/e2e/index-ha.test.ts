/**
 * No single point of failure: three index processes share the node map in a three-member etcd
 * (`index-db = etcd://...`), one of them elected leader; nodes and proxies follow whichever index
 * answers (`index-servers`). Real processes, real etcd, kill -9 and SIGSTOP.
 */
import { Etcd3 } from "etcd3";
import { afterAll, describe, expect, it, onTestFinished } from "vitest";
import { type EtcdCluster, etcdAvailable, startEtcd } from "../../harness/etcd.js";
import { admin, nodeState, pairUp, peerAdmin, until } from "../helpers/cluster.js";
import { Load, missing } from "../helpers/load.js";
import {
  type NodeProcess,
  startIndexProcess,
  startNodeProcess,
  startRole,
  stopAll,
} from "../helpers/processes.js";
import { requireCommand } from "../helpers/tools.js";
import { startWorker } from "../helpers/worker.js";

afterAll(stopAll);

const LEASE_TTL = 2;

interface HaLayout {
  etcd: EtcdCluster;
  indexes: NodeProcess[];
  /** `index-servers` for nodes and proxies. */
  list: string;
}

/**
 * What an index says of itself: whether it leads and the map version it has, from its /metrics
 * (and its `stats`, which must agree).
 */
async function indexView(index: NodeProcess): Promise<{ leader: boolean; version: number } | undefined> {
  if (index.httpPort === undefined) throw new Error(`index ${index.port} has no HTTP port`);
  try {
    const [metrics, stats] = await Promise.all([
      fetch(`http://127.0.0.1:${index.httpPort}/metrics`, { signal: AbortSignal.timeout(2000) }).then((r) =>
        r.text(),
      ),
      admin(index.port, "stats", "END\r\n"),
    ]);
    const leader = /\nflare_index_leader (\d)\n/.exec(metrics)?.[1];
    if (leader === undefined) throw new Error(`no flare_index_leader in /metrics: ${metrics.slice(0, 200)}`);
    return {
      leader: leader === "1" && stats.includes("STAT leader 1\r\n"),
      version: Number(/\nflare_map_version (\d+)\n/.exec(metrics)?.[1]),
    };
  } catch (err) {
    if (err instanceof Error && err.message.startsWith("no flare_index_leader")) throw err;
    return undefined;
  }
}

async function isLeader(index: NodeProcess): Promise<boolean> {
  return (await indexView(index))?.leader === true;
}

const alive = (p: NodeProcess): boolean => p.proc.exitCode === null && p.proc.signalCode === null;

/** The map version a node has (its `stats`). */
async function nodeVersion(node: NodeProcess): Promise<number> {
  return Number(/STAT node_map_version (\d+)/.exec(await admin(node.port, "stats", "END\r\n"))?.[1]);
}

/** The indexes that say they lead now (asked at once, each). */
async function leaders(indexes: NodeProcess[]): Promise<NodeProcess[]> {
  const live = indexes.filter(alive);
  const says = await Promise.all(live.map(isLeader));
  return live.filter((_, i) => says[i]);
}

async function leaderOf(indexes: NodeProcess[], timeoutMs = 15_000): Promise<NodeProcess> {
  let found: NodeProcess[] = [];
  await until(
    "one index to lead",
    async () => {
      found = await leaders(indexes);
      return found.length === 1;
    },
    timeoutMs,
  );
  return found[0] as NodeProcess;
}

const INDEX_ARGS = [
  "--etcd-lease-ttl",
  String(LEASE_TTL),
  "--monitor-interval",
  "1",
  "--monitor-threshold",
  "3",
];

async function startHa(prefix: string): Promise<HaLayout> {
  requireCommand("etcd", "etcd-server");
  const etcd = await startEtcd(3);
  onTestFinished(() => etcd.stop());
  const indexes = await Promise.all(
    [0, 1, 2].map(() =>
      startIndexProcess(["--index-db", etcd.url(prefix), ...INDEX_ARGS, "--http-port", "0"]),
    ),
  );
  onTestFinished(() => Promise.all(indexes.map((i) => i.stop())).then(() => undefined));
  return { etcd, indexes, list: indexes.map((i) => `127.0.0.1:${i.port}`).join(",") };
}

/** Starts a killed index again on its port, so the nodes' index-servers lists still name it. */
function restartIndex(ha: HaLayout, i: number, prefix: string): Promise<NodeProcess> {
  const old = ha.indexes[i] as NodeProcess;
  return startIndexProcess([
    "--index-db",
    ha.etcd.url(prefix),
    ...INDEX_ARGS,
    "--http-port",
    "0",
    "--server-port",
    String(old.port),
  ]).then((index) => {
    ha.indexes[i] = index;
    onTestFinished(() => index.stop());
    return index;
  });
}

/** The seed's pair (sync replication) and a proxy on the HA indexes, a set/get load running through it. */
async function seedOnHa(ha: HaLayout, nodeExtra: string[] = []) {
  const leader = await leaderOf(ha.indexes);
  const nodeArgs = ["--index-servers", ha.list, "--replication-type", "sync", ...nodeExtra];
  const master = await startNodeProcess(nodeArgs);
  const slave = await startNodeProcess(nodeArgs);
  await pairUp(leader, undefined, master, slave);
  return { leader, master, slave, load: await loadThroughProxy(ha) };
}

/** A proxy on the HA indexes, once it takes writes, with a set/get load running through it. */
async function loadThroughProxy(ha: HaLayout): Promise<Load> {
  const proxy = await startRole("proxy", "proxy started", ["--index-servers", ha.list]);
  await until(
    "the proxy to take writes",
    async () => (await admin(proxy.port, "set warm 0 0 1\r\nx")) === "STORED\r\n",
  );
  const load = new Load();
  await load.start(proxy.port);
  return load;
}

describe.runIf(etcdAvailable() || process.env.CI)("index service on etcd", () => {
  it("kill -9 of the leading index, then of the master 0.5 s later, under load: a new leader promotes the slave, nothing fails or is lost", async () => {
    const ha = await startHa("/drill");
    // The nodes have HTTP ports: a Worker reaches them that way.
    const { leader, master, slave, load } = await seedOnHa(ha, ["--http-port", "0"]);
    await new Promise((r) => setTimeout(r, 1000));

    leader.proc.kill("SIGKILL");
    await new Promise((r) => setTimeout(r, 500));
    master.proc.kill("SIGKILL");
    const killedAt = Date.now();
    const rest = ha.indexes.filter((i) => i !== leader);
    await until(
      "the slave to take writes",
      async () => (await admin(slave.port, "set probe 0 0 1\r\np")) === "STORED\r\n",
      30_000,
    );
    const tookWrites = Date.now() - killedAt;
    const next = await leaderOf(rest);
    await new Promise((r) => setTimeout(r, 1000));
    await load.stop();
    console.log(
      `index HA: leader index and master killed 0.5 s apart; the slave took writes ${tookWrites} ms after the master's kill (lease TTL ${LEASE_TTL} s); ${load.acked.size} sets acknowledged through the proxy, ${load.failedSets.length} failed, ${load.wrongGets.length} wrong gets`,
    );
    expect(await nodeState(next, slave.port)).toBe("master/active");
    expect(load.failedSets).toEqual([]);
    expect(load.wrongGets).toEqual([]);
    expect(load.acked.size).toBeGreaterThan(100);
    expect(await missing(slave.port, load.acked)).toEqual([]);
    // A follower refuses changes and names the leader.
    const follower = rest.find((i) => i !== next) as NodeProcess;
    expect(await peerAdmin(follower.port, undefined, `node role localhost ${slave.port} master 1 0`)).toBe(
      `SERVER_ERROR not the leader index (leader: localhost:${next.port})\r\n`,
    );
    const viaHttp = await fetch(
      `http://127.0.0.1:${follower.httpPort}/v1/nodes/localhost/${slave.port}/role`,
      {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ role: "master", balance: 1, partition: 0 }),
      },
    );
    expect(viaHttp.status).toBe(503);
    expect(await viaHttp.json()).toEqual({
      error: { code: "NOT_LEADER", message: `not the leader index (leader: localhost:${next.port})` },
    });
    expect(tookWrites).toBeLessThan(2000 + LEASE_TTL * 1000 + 1000);
    // The Worker takes the list too: the dead index first, it reads the map from the next.
    const edge = await startWorker([leader, ...rest].map((i) => `http://127.0.0.1:${i.httpPort}`).join(","));
    onTestFinished(edge.stop);
    const put = await fetch(`${edge.url}/v1/kv/edge`, { method: "PUT", body: "e" });
    expect(put.status, await put.clone().text()).toBe(200);
    expect(await (await fetch(`${edge.url}/v1/kv/edge`)).text()).toBe("e");
    expect(await admin(slave.port, "get edge", "END\r\n")).toBe("VALUE edge 0 1\r\ne\r\nEND\r\n");
  }, 120_000);

  it("kill -9 of the leading index, 10 times: one leader at every moment, a new one within the lease, no map version goes backwards", async () => {
    const prefix = "/rounds";
    const ha = await startHa(prefix);
    const etcd = new Etcd3({ hosts: ha.etcd.members.map((m) => `http://127.0.0.1:${m.clientPort}`) });
    onTestFinished(() => etcd.close());
    let leader = await leaderOf(ha.indexes);
    // Async replication with the master lease the index suggests: the master must keep taking
    // writes while the leaders change, though no index pings it for a while each time.
    const node = await startNodeProcess(["--index-servers", ha.list, "--replication-type", "async"]);
    expect(await peerAdmin(leader.port, undefined, `node role localhost ${node.port} master 1 0`)).toBe(
      "OK\r\n",
    );
    expect(node.stderr()).toMatch(/"msg":"master lease".*"ms":\d+/);
    const load = await loadThroughProxy(ha);
    // Sampled all along: each index's claim and version, the leader key in etcd, the node's version.
    const problems: string[] = [];
    let samples = 0;
    let sampling = true;
    const lastVersion = new Map<string, number>();
    const sampler = (async () => {
      while (sampling) {
        const views = await Promise.all(ha.indexes.map((i) => (alive(i) ? indexView(i) : undefined)));
        const inEtcd = await etcd.get(`${prefix}/leader`).string();
        const claims = ha.indexes.filter((_, i) => views[i]?.leader === true);
        if (claims.length > 1) problems.push(`${claims.length} indexes lead at once`);
        if (claims.length === 1 && inEtcd !== `localhost:${claims[0]?.port}`)
          problems.push(`index localhost:${claims[0]?.port} leads, etcd names ${inEtcd}`);
        const versions: [string, number][] = ha.indexes.flatMap((ix, i) => {
          const v = views[i]?.version;
          return v === undefined || Number.isNaN(v) ? [] : [[`index ${ix.port}`, v] as [string, number]];
        });
        versions.push(["node", await nodeVersion(node)]);
        for (const [who, v] of versions) {
          if (v < (lastVersion.get(who) ?? 0))
            problems.push(`${who}: map version ${lastVersion.get(who)} -> ${v}`);
          lastVersion.set(who, v);
        }
        samples++;
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    // A failed round must not leave it sampling a closed etcd client.
    onTestFinished(() => {
      sampling = false;
    });
    sampler.catch(() => undefined);
    const handovers: number[] = [];
    for (let round = 0; round < 10; round++) {
      const i = ha.indexes.indexOf(leader);
      leader.proc.kill("SIGKILL");
      const killedAt = Date.now();
      const rest = ha.indexes.filter((x) => x !== leader);
      try {
        leader = await leaderOf(rest, LEASE_TTL * 1000 + 5000);
      } catch (err) {
        for (const x of rest)
          console.log(`index ${x.port}:\n${x.stderr().split("\n").slice(-15).join("\n")}`);
        throw err;
      }
      handovers.push(Date.now() - killedAt);
      // The new leader changes the map (the versions must keep rising), and the dead one comes back.
      expect(
        await peerAdmin(
          leader.port,
          undefined,
          `node role localhost ${node.port} master ${1 + (round % 3)} 0`,
        ),
      ).toBe("OK\r\n");
      await restartIndex(ha, i, prefix);
    }
    sampling = false;
    await sampler;
    await load.stop();
    console.log(
      `index HA: 10 leader kills, new leader after ${handovers.join(", ")} ms (lease TTL ${LEASE_TTL} s); ${samples} samples, final map version ${lastVersion.get("node")}; ${load.acked.size} sets through the proxy to an async master with a lease, ${load.failedSets.length} failed`,
    );
    expect(load.failedSets).toEqual([]);
    expect(load.wrongGets).toEqual([]);
    expect(load.acked.size).toBeGreaterThan(1000);
    expect(await missing(node.port, load.acked)).toEqual([]);
    expect(problems).toEqual([]);
    expect(samples).toBeGreaterThan(50);
    for (const ms of handovers) expect(ms).toBeLessThan(LEASE_TTL * 1000 + 1500);
    // The node heard every change: the last map and the balance the last round set.
    expect(await nodeState(leader, node.port)).toBe("master/active");
    expect(await admin(leader.port, "stats nodes", "END\r\n")).toContain(
      `STAT localhost:${node.port}:balance ${1 + (9 % 3)}`,
    );
    expect(await nodeVersion(node)).toBe((await indexView(leader))?.version);
  }, 180_000);

  it("etcd members lost: with one gone everything works; with two, changes are refused clearly while data flows, until quorum returns", async () => {
    const ha = await startHa("/quorum");
    const { master, slave, load } = await seedOnHa(ha);
    const change = (balance: number) =>
      Promise.all(
        ha.indexes.map((i) =>
          peerAdmin(i.port, undefined, `node role localhost ${slave.port} slave ${balance} 0`),
        ),
      );

    await ha.etcd.kill(0);
    await new Promise((r) => setTimeout(r, 1000));
    const current = await leaderOf(ha.indexes);
    expect(await peerAdmin(current.port, undefined, `node role localhost ${slave.port} slave 3 0`)).toBe(
      "OK\r\n",
    );
    const before = await nodeVersion(master);

    await ha.etcd.kill(1);
    // Within the lease no index leads any more, and every change is refused, naming why.
    await until(
      "no index to lead",
      async () => (await leaders(ha.indexes)).length === 0,
      LEASE_TTL * 1000 + 3000,
    );
    // Each index finds out that etcd answers nothing within seconds; until then it names the leader it last saw.
    let refusals: string[] = [];
    await until(
      "every index to refuse changes for want of a quorum",
      async () => {
        refusals = await change(4);
        return refusals.every(
          (r) => r === "SERVER_ERROR not the leader index (no leader: etcd has no quorum)\r\n",
        );
      },
      10_000,
    );
    console.log(
      `index HA without etcd quorum, changes answered: ${[...new Set(refusals.map((r) => r.trim()))].join(" | ")}`,
    );
    await new Promise((r) => setTimeout(r, 1500));
    expect(await nodeVersion(master)).toBe(before);
    expect(await nodeVersion(slave)).toBe(before);

    await ha.etcd.restart(1);
    // The first change after the quorum is back may still meet the etcd client's circuit breaker,
    // opened while the members were gone: it is refused clearly, and taken once the breaker closes.
    let back = await leaderOf(ha.indexes, 20_000);
    let answer = "";
    await until(
      "a change to be taken once etcd has its quorum again",
      async () => {
        back = await leaderOf(ha.indexes, 20_000);
        answer = await peerAdmin(back.port, undefined, `node role localhost ${slave.port} slave 4 0`);
        return answer === "OK\r\n";
      },
      15_000,
    );
    expect(answer).toBe("OK\r\n");
    await load.stop();
    console.log(
      `index HA, etcd members lost: ${load.acked.size} sets through the proxy, ${load.failedSets.length} failed`,
    );
    expect(load.failedSets).toEqual([]);
    expect(load.wrongGets).toEqual([]);
    expect(load.acked.size).toBeGreaterThan(100);
    expect(await missing(master.port, load.acked)).toEqual([]);
    expect(await admin(back.port, "stats nodes", "END\r\n")).toContain(
      `STAT localhost:${slave.port}:balance 4`,
    );
  }, 120_000);

  it("a SIGSTOPped leader that resumes pushes and applies nothing", async () => {
    const ha = await startHa("/frozen");
    const frozen = await leaderOf(ha.indexes);
    const node = await startNodeProcess(["--index-servers", ha.list]);
    const second = await startNodeProcess(["--index-servers", ha.list]);
    expect(await peerAdmin(frozen.port, undefined, `node role localhost ${node.port} master 1 0`)).toBe(
      "OK\r\n",
    );
    frozen.proc.kill("SIGSTOP");
    onTestFinished(() => void frozen.proc.kill("SIGCONT"));
    const rest = ha.indexes.filter((i) => i !== frozen);
    const next = await leaderOf(rest, LEASE_TTL * 1000 + 5000);
    // While it is frozen the map moves on: the node it watched goes down, another becomes master.
    node.proc.kill("SIGKILL");
    await until("the node to be down", async () => (await nodeState(next, node.port)).endsWith("/down"));
    expect(await peerAdmin(next.port, undefined, `node role localhost ${second.port} master 1 0`)).toBe(
      "OK\r\n",
    );
    const version = (await indexView(next))?.version as number;
    await until("the second node to have the map", async () => (await nodeVersion(second)) === version);
    const logged = frozen.stderr().length;
    frozen.proc.kill("SIGCONT");
    await until(
      "the resumed index to follow",
      async () => (await indexView(frozen))?.leader === false,
      10_000,
    );
    await new Promise((r) => setTimeout(r, 3000));
    const after = frozen.stderr().slice(logged);
    console.log(
      `index HA, leader resumed after SIGSTOP: ${after
        .split("\n")
        .filter((l) => l.includes('"msg"'))
        .map((l) => JSON.parse(l).msg)
        .join(" | ")}`,
    );
    expect(after).not.toMatch(/"msg":"(map pushed|map pushed to new master|partition map rebuilt)"/);
    expect((await indexView(frozen))?.version).toBe(version);
    expect(await nodeVersion(second)).toBe(version);
    expect(await nodeState(next, second.port)).toBe("master/active");
  }, 120_000);
});
