/** flared's configuration keys (flare-notes §7.2) plus flare-ts's own, validated with zod. */
import { z } from "zod";
import { clusterSecretKeys } from "../common/cluster-secret.js";
import { type ConfigSpec, cfg } from "../common/config.js";

export const nodeSchema = z.object({
  "data-dir": cfg.str().optional().describe("Directory for the node's data (needed by on-disk engines)."),
  "server-name": cfg
    .str()
    .default("localhost")
    .describe("The node's name; with server-port it is the node's identity."),
  "server-port": cfg
    .int(0, 65535)
    .default(12121)
    .describe("memcached text protocol port (0 = any free port)."),
  "bind-address": cfg.str().default("127.0.0.1").describe("Address the TCP and HTTP servers listen on."),
  ...clusterSecretKeys,
  "http-port": cfg
    .int(0, 65535)
    .optional()
    .describe("HTTP API port; unset = no HTTP API, 0 = any free port."),
  "index-servers": cfg
    .str()
    .optional()
    .describe("Index servers host:port[,host:port]; unset = standalone node."),
  "index-server-name": cfg.str().optional().describe("Single index server host (Flare style)."),
  "index-server-port": cfg.int(1, 65535).default(12120).describe("Single index server port."),
  "index-register-timeout": cfg
    .int(1, 3600)
    .default(15)
    .describe("Seconds a starting node keeps asking the index to register it."),
  "max-connection": cfg
    .int(1, 1_000_000)
    .default(128)
    .describe("Client connections served at once; more are refused."),
  "net-read-timeout": cfg
    .int(1, 2_147_483)
    .default(600)
    .describe("Seconds a connection may stay idle or stalled."),
  "back-log": cfg.int(1, 65535).default(30).describe("Listen backlog."),
  "storage-type": z
    .enum(["memory", "leveldb", "redis", "tch", "tcb", "kch"])
    .default("memory")
    .describe("Engine: memory, leveldb (on disk, in data-dir) or redis; Flare's tch/tcb/kch select leveldb."),
  "redis-url": cfg.str().default("redis://127.0.0.1:6379").describe("Redis server for storage-type = redis."),
  "redis-prefix": z
    .string()
    .regex(/^[\x21-\x7e]*$/, "must be printable ASCII without spaces")
    .meta({ values: "printable ASCII, no spaces" })
    .optional()
    .describe("Prefix of this node's Redis keys (default flare:<server-name>:<server-port>:)."),
  "redis-timeout": cfg.int(10, 60_000).default(1000).describe("Milliseconds before a Redis call fails."),
  "expiry-sweep-interval": cfg
    .int(0, 86_400)
    .default(60)
    .describe("Seconds between sweeps of expired items (0 = only on access)."),
  "memory-limit": cfg
    .bytes(1024 * 1024, 2 ** 50)
    .default(1024 ** 3)
    .describe("Memory engine byte limit (LRU eviction beyond it)."),
  "item-size-max": cfg
    .bytes(1024, 1024 ** 3)
    .default(1024 * 1024)
    .describe("Largest value accepted."),
  "key-max-length": cfg.int(1, 65535).default(250).describe("Longest key accepted, in bytes."),
  "max-line-length": cfg
    .bytes(1024, 64 * 1024 ** 2)
    .default(64 * 1024)
    .describe("Longest request line; longer closes the connection."),
  "replication-type": z
    .enum(["async", "sync"])
    .default("async")
    .describe("async: reply, then replicate; sync: reply once every slave applied the write."),
  "master-lease": z
    .string()
    .regex(/^(auto|\d{1,7})$/, "expected auto or a number of milliseconds")
    .transform((s) => (s === "auto" ? ("auto" as const) : Number(s)))
    .default("auto")
    .meta({ values: "auto, or milliseconds (0 = none)" })
    .describe(
      "A master that has not heard from the index for this long stops taking writes until it does (fencing when cut off). auto: with async replication, what the index suggests (which waits it out before promoting); with sync, none (slaves fence).",
    ),
  "engine-ping-timeout": cfg
    .int(10, 60_000)
    .default(500)
    .describe("Milliseconds ping and /healthz wait for the engine: a frozen backend fails the node over."),
  "replication-log-size": cfg
    .int(1000, 100_000_000)
    .default(100_000)
    .describe(
      "Recent writes a master keeps for slaves to catch up; a slave further behind makes writers wait.",
    ),
  "reconstruction-interval": cfg
    .int(0, 1_000_000)
    .default(0)
    .describe("Microseconds the master waits per item while rebuilding a slave."),
  "reconstruction-bwlimit": cfg
    .int(0, 10_000_000)
    .default(0)
    .describe("KB/s a slave rebuild may use (0 = unlimited)."),
  "storage-cache-size": cfg
    .int(1, 100_000_000)
    .default(65536)
    .describe("Tombstones kept for deleted keys' versions."),
});

export type NodeConfig = z.infer<typeof nodeSchema>;

/** flared keys accepted so Flare config files run unchanged; they have no effect here. */
export const flaredIgnored: ReadonlySet<string> = new Set([
  "log-facility",
  "thread-pool-size",
  "stack-size",
  "mutex-slot",
  "proxy-concurrency",
  "proxy-prior-netmask",
  "max-total-thread-queue",
  "noreply-window-limit",
  "storage-ap",
  "storage-fp",
  "storage-bucket-size",
  "storage-compress",
  "storage-large",
  "storage-lmemb",
  "storage-nmemb",
  "storage-dfunit",
  "server-socket",
  "time-watcher-enabled",
  "time-watcher-polling-interval-msec",
  "storage-access-watch-threshold-warn-msec",
  "storage-access-watch-threshold-ping-ng-msec",
  "cluster-replication",
  "cluster-replication-server-name",
  "cluster-replication-server-port",
  "cluster-replication-concurrency",
  "cluster-replication-mode",
  "daemonize",
  "pid",
  "stderr",
]);

export const nodeConfigSpec: ConfigSpec<typeof nodeSchema.shape> = {
  role: "node",
  schema: nodeSchema,
  ignored: flaredIgnored,
};
