/**
 * No single point of failure: three index processes share the node map in a three-member etcd
 * (`index-db = etcd://...`), one of them elected leader; nodes and proxies follow whichever index
 * answers (`index-servers`). Real processes, real etcd, kill -9 and SIGSTOP.
 */
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

afterAll(stopAll);

const LEASE_TTL = 2;

interface HaLayout {
  etcd: EtcdCluster;
  indexes: NodeProcess[];
  /** `index-servers` for nodes and proxies. */
  list: string;
}

async function isLeader(index: NodeProcess): Promise<boolean> {
  try {
    return (await admin(index.port, "stats", "END\r\n")).includes("STAT leader 1\r\n");
  } catch {
    return false;
  }
}

/** The indexes that say they lead now (asked at once, each). */
async function leaders(indexes: NodeProcess[]): Promise<NodeProcess[]> {
  const live = indexes.filter((i) => i.proc.exitCode === null && i.proc.signalCode === null);
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

async function startHa(prefix: string): Promise<HaLayout> {
  if (!etcdAvailable()) throw new Error("etcd is not installed (Debian: etcd-server); .ci/run installs it");
  const etcd = await startEtcd(3);
  onTestFinished(() => etcd.stop());
  const indexes = await Promise.all(
    [0, 1, 2].map(() =>
      startIndexProcess([
        "--index-db",
        etcd.url(prefix),
        "--etcd-lease-ttl",
        String(LEASE_TTL),
        "--monitor-interval",
        "1",
        "--monitor-threshold",
        "3",
        "--http-port",
        "0",
      ]),
    ),
  );
  onTestFinished(() => Promise.all(indexes.map((i) => i.stop())).then(() => undefined));
  return { etcd, indexes, list: indexes.map((i) => `127.0.0.1:${i.port}`).join(",") };
}

describe.runIf(etcdAvailable() || process.env.CI)("index service on etcd", () => {
  it("kill -9 of the leading index, then of the master 0.5 s later, under load: a new leader promotes the slave, nothing fails or is lost", async () => {
    const ha = await startHa("/drill");
    const leader = await leaderOf(ha.indexes);
    const nodeArgs = ["--index-servers", ha.list, "--replication-type", "sync"];
    const master = await startNodeProcess(nodeArgs);
    const slave = await startNodeProcess(nodeArgs);
    await pairUp(leader, undefined, master, slave);
    const proxy = await startRole("proxy", "proxy started", ["--index-servers", ha.list]);
    await until(
      "the proxy to take writes",
      async () => (await admin(proxy.port, "set warm 0 0 1\r\nx")) === "STORED\r\n",
    );
    const load = new Load();
    await load.start(proxy.port);
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
    expect(tookWrites).toBeLessThan(2000 + LEASE_TTL * 1000 + 1000);
  }, 120_000);
});
