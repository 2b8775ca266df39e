/** A storage node: one engine, the store above it, and its TCP and HTTP front ends. */
import { clusterSecret, warnIfOpen } from "../common/cluster-secret.js";
import { ServerError } from "../common/errors.js";
import { indexServers } from "../common/flared-config.js";
import type { HttpServer } from "../common/http-serve.js";
import type { Logger } from "../common/log.js";
import { createRegistry, LatencyRecorder } from "../common/metrics.js";
import { VERSION } from "../common/version.js";
import type { ClusterSecret } from "../protocol/cluster-auth.js";
import { ClusterMember } from "../protocol/cluster-member.js";
import { partitioning } from "../protocol/key-hash.js";
import { MemcacheServer, newServerCounters } from "../protocol/memcache/server.js";
import type { NodeEntry } from "../protocol/node-map.js";
import type { NodeConfig } from "./config.js";
import { Counters } from "./counters.js";
import { openEngine } from "./engines/open.js";
import { Forwarding } from "./forwarding.js";
import { MemcacheCommands, type NodeInfo } from "./memcache-commands.js";
import { registerNodeMetrics } from "./metrics.js";
import { reconstruct } from "./reconstruction.js";
import { Replicator } from "./replicator.js";
import { Store } from "./store.js";

export interface RunningNode {
  readonly port: number;
  readonly httpPort: number | undefined;
  readonly store: Store;
  stop(): Promise<void>;
}

export async function startNode(config: NodeConfig, log: Logger): Promise<RunningNode> {
  const secret = clusterSecret(config);
  const member = clusterMember(config, secret, log);
  const { engine, tombstones } = await openEngine(config, log);
  const store = new Store(engine, tombstones, new Counters());
  const registry = createRegistry("node");
  const info: NodeInfo = {
    ...newServerCounters(
      new LatencyRecorder(
        registry,
        "flare_request_duration_seconds",
        "memcached requests by command: from parsed to reply ready (a write in sync mode: to every slave's ack).",
      ),
    ),
    version: VERSION,
    startedAt: Date.now(),
    maxConnections: config["max-connection"],
    itemSizeMax: config["item-size-max"],
    mapVersion: () => member?.version ?? 0,
    pingTimeoutMs: config["engine-ping-timeout"],
  };
  const limits = {
    maxLine: config["max-line-length"],
    maxValue: config["item-size-max"],
    maxKey: config["key-max-length"],
  };
  const commands = new MemcacheCommands(store, info, log, member);
  let replicator: Replicator | undefined;
  let forwarding: Forwarding | undefined;
  if (member !== undefined) {
    const cluster = member;
    replicator = new Replicator(
      store,
      {
        logSize: config["replication-log-size"],
        credentials: { secret, role: "node" },
        mapVersion: () => cluster.version,
        fenced: (peerVersion) => cluster.refusedBy(peerVersion),
      },
      log,
    );
    commands.replication = { replicator, mode: config["replication-type"] };
    forwarding = new Forwarding(
      cluster,
      {
        concurrency: config["proxy-concurrency"],
        requestTimeoutMs: config["proxy-request-timeout"],
        writeWaitMs: config["proxy-write-wait"],
        version: VERSION,
        credentials: { secret, role: "node" },
      },
      log,
    );
    commands.forwarding = forwarding;
    followCluster({ member, store, replicator, config, secret, log });
  }
  registerNodeMetrics(registry, store, info, member, () => replicator);
  const tcp = new MemcacheServer(
    {
      host: config["bind-address"],
      port: config["server-port"],
      backlog: config["back-log"],
      maxConnections: config["max-connection"],
      readTimeoutSeconds: config["net-read-timeout"],
      limits,
      secret,
    },
    commands,
    info,
    log,
  );
  const address = await tcp.listen();
  let http: HttpServer | undefined;
  if (config["http-port"] !== undefined) {
    const writeRefusal =
      member === undefined ? undefined : (key: string) => member.writeRefusal(undefined, key);
    // Loaded only for a node with an HTTP API: a memcached-only node's process stays smaller.
    const [{ createNodeHttpApp }, { serveHttp }, { httpPassOn }] = await Promise.all([
      import("./http-app.js"),
      import("../common/http-serve.js"),
      import("./http-forwarding.js"),
    ]);
    const passOn =
      forwarding === undefined || member === undefined
        ? undefined
        : httpPassOn(
            forwarding,
            member,
            {
              self: `${config["server-name"]}:${address.port}`,
              requestTimeoutMs: config["proxy-request-timeout"],
              writeWaitMs: config["proxy-write-wait"],
              maxKey: limits.maxKey,
              maxValue: limits.maxValue,
            },
            log,
          );
    const app = createNodeHttpApp(
      store,
      {
        maxKey: limits.maxKey,
        maxValue: limits.maxValue,
        pingTimeoutMs: config["engine-ping-timeout"],
        acknowledged: () => replicator?.acknowledged(config["replication-type"]),
        writeRefusal,
        passOn,
        metrics: registry,
      },
      log,
    );
    http = await serveHttp(app, config["bind-address"], config["http-port"]);
  }
  if (member !== undefined) {
    member.listening(address.port, http?.address.port);
    try {
      await member.register();
      const keys = partitioning(member.meta);
      commands.partitioning = keys;
      forwarding?.router.use(keys.algorithm, keys.resolver);
      member.keyPartition = (key, partitions) => keys.resolver.partitionOf(key, keys.algorithm, partitions);
    } catch (err) {
      await Promise.all([tcp.close(), http?.close()]);
      await engine.close();
      throw err;
    }
  }
  warnIfOpen(secret, config["bind-address"], log);
  log.info("node started", {
    engine: engine.kind,
    port: address.port,
    httpPort: http?.address.port,
    mode: member === undefined ? "standalone" : "cluster",
    role: member?.self()?.role,
  });
  const sweepSeconds = config["expiry-sweep-interval"];
  const sweeper =
    sweepSeconds > 0 && engine.sync
      ? setInterval(() => {
          store.sweepExpired().catch((err: unknown) => log.warn("expiry sweep failed", { err }));
        }, sweepSeconds * 1000).unref()
      : undefined;
  const running = store;
  return {
    port: address.port,
    httpPort: http?.address.port,
    store: running,
    async stop() {
      clearInterval(sweeper);
      await member?.leave();
      replicator?.close();
      forwarding?.close();
      await Promise.all([tcp.close(), http?.close()]);
      running.close();
      await engine.close();
      log.info("node stopped", { port: address.port });
    },
  };
}

/** A node with index settings joins that cluster; without them it runs standalone. */
function clusterMember(config: NodeConfig, secret: ClusterSecret, log: Logger): ClusterMember | undefined {
  const indexes = indexServers(config);
  if (indexes.length === 0) return undefined;
  return new ClusterMember(
    {
      indexes,
      serverName: config["server-name"],
      registerTimeoutMs: config["index-register-timeout"] * 1000,
      credentials: { secret, role: "node" },
      // Sync replication fences through the slaves; the lease is for async, where nothing else can.
      masterLease:
        config["master-lease"] === "auto" && config["replication-type"] === "sync"
          ? 0
          : config["master-lease"],
    },
    log,
  );
}

/** What a node brings to the cluster's changes. */
interface Follower {
  member: ClusterMember;
  store: Store;
  replicator: Replicator;
  config: NodeConfig;
  secret: ClusterSecret;
  log: Logger;
}

/**
 * What a node does when the map changes: as master it replicates to its slaves; made a slave of a
 * partition (prepare), it drops what it held and rebuilds from the master, then reports active;
 * made master of a new partition (prepare), it copies the keys that move to it from every master,
 * then reports ready.
 */
function followCluster(f: Follower): void {
  const { member, store, replicator, log } = f;
  let serving = member.partitionCount();
  member.onMap((nodes, before, after) => {
    replicator.follow(member.selfKey, nodes, member.addedMaster(), member.keyPartition);
    const count = member.partitionCount();
    if (count > serving && after?.state === "active") {
      // Not at once: a proxy the new map has not reached yet still reads those keys here.
      setTimeout(() => void dropGivenAway(member, store, log), MOVED_KEYS_GRACE_MS).unref();
    }
    serving = count;
    const entering = (role: "slave" | "master"): boolean =>
      after?.role === role &&
      after.state === "prepare" &&
      !(before?.role === role && before.state === "prepare");
    if (after === undefined) return;
    if (entering("master")) void copyPartition(f, after.partition, after.port);
    else if (entering("slave")) void rebuildSlave(f, after.partition, after.port);
  });
}

/** `dump` of `partition` of `partitions` from `source` into the store; the number of items. */
function dumpFrom(f: Follower, source: NodeEntry, partition: number, partitions: number): Promise<number> {
  return reconstruct(
    f.store,
    {
      credentials: { secret: f.secret, role: "node" },
      host: source.host,
      port: source.port,
      partition,
      partitions,
      interval: f.config["reconstruction-interval"],
      bwlimit: f.config["reconstruction-bwlimit"],
    },
    f.log,
  );
}

/**
 * Tells the index how a rebuild ended: `done` (active, ready) or, when it failed and the node is
 * still preparing as `role` (an operator or the index may have moved on), the role given back.
 */
async function report(
  f: Follower,
  port: number,
  role: "slave" | "master",
  done: string | Error,
): Promise<void> {
  const name = f.config["server-name"];
  if (typeof done === "string") {
    const now = f.member.self();
    if (now?.role !== role || now.state !== "prepare") return;
    const reply = await f.member.tellIndex(`node state ${name} ${port} ${done}`);
    if (reply !== "OK") f.log.warn(`index refused ${done}`, { reply });
    return;
  }
  f.log.error(role === "slave" ? "reconstruction failed" : "partition copy failed", { err: done });
  const now = f.member.self();
  if (now?.role === role && now.state === "prepare")
    await f.member.tellIndex(`node role ${name} ${port} proxy`).catch(() => "");
}

async function rebuildSlave(f: Follower, partition: number, port: number): Promise<void> {
  const master = f.member.masterOf(partition);
  if (master === undefined) return;
  // A slave of a partition being added dumps its master's keys as they will be partitioned.
  const partitions = Math.max(f.member.partitionCount(), partition + 1);
  try {
    // Nothing this node held may survive: what the master deleted meanwhile must not come back.
    await f.store.flush(0);
    const started = Date.now();
    const items = await dumpFrom(f, master, partition, partitions);
    f.log.info("reconstruction done", { items, ms: Date.now() - started });
    await report(f, port, "slave", "active");
  } catch (err) {
    await report(f, port, "slave", err as Error);
  }
}

/**
 * Flare's reconstruction of a new partition: from each master, `dump` of the keys that partition
 * `partition` of `partition + 1` will own; each item is kept only if newer than what arrived
 * meanwhile (the masters also send each write of those keys as it happens). Then `ready`, which
 * the index turns into active (partition-auto-activate) or an operator does, once this node's
 * slaves have what it copied. A failed copy gives the role back: the old partitions still hold
 * every key.
 */
async function copyPartition(f: Follower, partition: number, port: number): Promise<void> {
  const started = Date.now();
  f.log.info("partition copy started", { partition });
  try {
    await f.store.flush(0);
    const sources = Array.from({ length: partition }, (_, p) => p);
    const counts = await Promise.all(sources.map((source) => copyFrom(f, source, partition)));
    const items = counts.reduce((a, b) => a + b, 0);
    // Ready means the partition holds its keys: its slaves too, for the reads they will take.
    await f.replicator.waitAll(f.replicator.seq);
    f.log.info("partition copy done", { partition, items, ms: Date.now() - started });
    await report(f, port, "master", "ready");
  } catch (err) {
    await report(f, port, "master", err as Error);
  }
}

/** How long a new partition keeps trying to copy from a partition whose master failed. */
const COPY_RETRY_MS = 60_000;
const COPY_RETRY_WAIT_MS = 200;

/**
 * The keys partition `source` gives to the new partition `partition`, from that partition's
 * master. A master that dies mid-copy is replaced by failover: the copy starts again from the
 * promoted slave, which has every write the old master acknowledged (items older than what
 * arrived meanwhile are not kept, so what came before does no harm).
 */
async function copyFrom(f: Follower, source: number, partition: number): Promise<number> {
  const deadline = Date.now() + COPY_RETRY_MS;
  for (;;) {
    const me = f.member.self();
    if (me?.role !== "master" || me.state !== "prepare")
      throw new ServerError("UNAVAILABLE", "no longer preparing a partition");
    const master = f.member.masterOf(source);
    let failure: unknown = `partition ${source} has no active master`;
    if (master?.state === "active") {
      try {
        return await dumpFrom(f, master, partition, partition + 1);
      } catch (err) {
        failure = err;
      }
    }
    if (Date.now() > deadline)
      throw failure instanceof Error ? failure : new ServerError("UNAVAILABLE", String(failure));
    f.log.warn("partition copy: retrying from the partition's master", { source, reason: String(failure) });
    await new Promise((r) => setTimeout(r, COPY_RETRY_WAIT_MS));
  }
}

/** How long a node keeps the keys that moved away after the map that moved them. */
const MOVED_KEYS_GRACE_MS = 5000;

/**
 * Once a partition was added, the keys that moved to it are dropped where they were (Flare left
 * them forever: memory held for nothing, and old values a later copy could bring back). Local
 * only, master and slaves each on their own: the new partition has the keys, so nothing is
 * replicated and no version is recorded. The scan yields between batches.
 */
async function dropGivenAway(member: ClusterMember, store: Store, log: Logger): Promise<void> {
  const owns = member.owned();
  if (owns === undefined) return;
  const started = Date.now();
  let dropped = 0;
  try {
    for await (const [key] of store.engine.scan()) {
      if (owns(key)) continue;
      await store.engine.delete(key);
      dropped++;
    }
    log.info("moved keys dropped", { dropped, ms: Date.now() - started });
  } catch (err) {
    log.warn("dropping moved keys failed", { dropped, err });
  }
}
