/** flared's configuration keys (flare-notes §7.2) plus flare-ts's own, validated with zod: a node's. */
import { z } from "zod";
import { type ConfigSpec, cfg } from "../common/config.js";
import { flaredIgnored, forwardKeys, frontKeys } from "../common/flared-config.js";

export const nodeSchema = z.object({
  "data-dir": cfg.str().optional().describe("Directory for the node's data (needed by on-disk engines)."),
  ...frontKeys,
  ...forwardKeys,
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
    .describe(
      "Memory engine: bytes its items may hold, pages and metadata (the least recently used go beyond it).",
    ),
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

export const nodeConfigSpec: ConfigSpec<typeof nodeSchema.shape> = {
  role: "node",
  schema: nodeSchema,
  ignored: flaredIgnored,
};
