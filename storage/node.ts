/** A storage node: one engine, the store above it, and its TCP and HTTP front ends. */
import { clusterSecret, warnIfOpen } from "../common/cluster-secret.js";
import { ConfigError } from "../common/errors.js";
import type { HttpServer } from "../common/http-serve.js";
import type { Logger } from "../common/log.js";
import { createRegistry, LatencyRecorder } from "../common/metrics.js";
import { VERSION } from "../common/version.js";
import type { ClusterSecret } from "../protocol/cluster-auth.js";
import { ClusterMember } from "../protocol/cluster-member.js";
import { partitioning } from "../protocol/key-hash.js";
import { MemcacheServer, newServerCounters } from "../protocol/memcache/server.js";
import type { NodeConfig } from "./config.js";
import { Counters } from "./counters.js";
import { openEngine } from "./engines/open.js";
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
    followCluster(member, store, replicator, config, secret, log);
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
    const writeRefusal = member === undefined ? undefined : () => member.writeRefusal(undefined);
    // Loaded only for a node with an HTTP API: a memcached-only node's process stays smaller.
    const [{ createNodeHttpApp }, { serveHttp }] = await Promise.all([
      import("./http-app.js"),
      import("../common/http-serve.js"),
    ]);
    const app = createNodeHttpApp(
      store,
      {
        maxKey: limits.maxKey,
        maxValue: limits.maxValue,
        pingTimeoutMs: config["engine-ping-timeout"],
        acknowledged: () => replicator?.acknowledged(config["replication-type"]),
        writeRefusal,
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
      commands.partitioning = partitioning(member.meta);
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
      await Promise.all([tcp.close(), http?.close()]);
      running.close();
      await engine.close();
      log.info("node stopped", { port: address.port });
    },
  };
}

/** A node with index settings joins that cluster; without them it runs standalone. */
function clusterMember(config: NodeConfig, secret: ClusterSecret, log: Logger): ClusterMember | undefined {
  const list = config["index-servers"];
  let host = config["index-server-name"];
  let port = config["index-server-port"];
  if (list !== undefined) {
    // Several index servers need a shared map store (Flare: ZooKeeper); the first one is used.
    const first = list.split(",")[0]?.trim() ?? "";
    const m = /^(.+):(\d+)$/.exec(first);
    if (m === null) throw new ConfigError(`index-servers: expected host:port[,host:port...] (got '${list}')`);
    host = m[1] as string;
    port = Number(m[2]);
  }
  if (host === undefined) return undefined;
  return new ClusterMember(
    {
      indexHost: host,
      indexPort: port,
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

/**
 * What a node does when the map changes: as master it replicates to its slaves; made a slave of a
 * partition (prepare), it drops what it held and rebuilds from the master, then reports active.
 */
function followCluster(
  member: ClusterMember,
  store: Store,
  replicator: Replicator,
  config: NodeConfig,
  secret: ClusterSecret,
  log: Logger,
): void {
  member.onMap((nodes, before, after) => {
    replicator.follow(member.selfKey, nodes);
    const startsRebuild =
      after?.role === "slave" &&
      after.state === "prepare" &&
      !(before?.role === "slave" && before.state === "prepare");
    if (!startsRebuild) return;
    const master = member.masterOf(after.partition);
    if (master === undefined) return;
    // Nothing this node held may survive: what the master deleted meanwhile must not come back.
    const cleared = store.flush(0);
    void (async () => {
      try {
        await cleared;
        const started = Date.now();
        const items = await reconstruct(
          store,
          {
            credentials: { secret, role: "node" },
            host: master.host,
            port: master.port,
            partition: after.partition,
            partitions: member.partitionCount(),
            interval: config["reconstruction-interval"],
            bwlimit: config["reconstruction-bwlimit"],
          },
          log,
        );
        log.info("reconstruction done", { items, ms: Date.now() - started });
        const reply = await member.tellIndex(`node state ${config["server-name"]} ${after.port} active`);
        if (reply !== "OK") log.warn("index refused activation", { reply });
      } catch (err) {
        log.error("reconstruction failed", { err });
        // Give the role back only while still rebuilding: an operator (or the index) may have moved on.
        const now = member.self();
        if (now?.role === "slave" && now.state === "prepare") {
          await member.tellIndex(`node role ${config["server-name"]} ${after.port} proxy`).catch(() => "");
        }
      }
    })();
  });
}
