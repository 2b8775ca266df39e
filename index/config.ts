/** flarei's configuration keys (flare-notes §7.1) plus flare-ts's own, validated with zod. */
import { z } from "zod";
import { clusterSecretKeys } from "../common/cluster-secret.js";
import { type ConfigSpec, cfg } from "../common/config.js";
import { HASH_ALGORITHMS } from "../protocol/key-hash.js";

export const indexSchema = z.object({
  "data-dir": cfg
    .str()
    .optional()
    .describe("Directory of the persisted node map (required with the file index-db)."),
  "index-db": z
    .string()
    .regex(
      /^(file:\/\/.+|etcd:\/\/[^/\s]+(\/\S*)?)$/,
      "expected file://DIR or etcd://host:port[,host:port...][/prefix]",
    )
    .optional()
    .meta({ values: "file://DIR, etcd://host:port[,host:port...][/prefix]" })
    .describe(
      "Where the node map lives: file://DIR (default: data-dir; one index), or etcd (several index processes, one elected leader).",
    ),
  "etcd-lease-ttl": cfg
    .int(1, 600)
    .default(2)
    .describe(
      "Seconds of the leading index's etcd lease: a dead leader is replaced about this long after it died.",
    ),
  "server-name": cfg.str().default("localhost").describe("The index server's name."),
  "server-port": cfg
    .int(0, 65535)
    .default(12120)
    .describe("Flare admin text protocol port (0 = any free port)."),
  "bind-address": cfg.str().default("127.0.0.1").describe("Address the servers listen on."),
  "http-port": cfg.int(0, 65535).optional().describe("HTTP API port; unset = none, 0 = any free port."),
  ...clusterSecretKeys,
  "admin-token": cfg
    .str()
    .optional()
    .describe("Bearer token the HTTP API also takes for changes (cluster-token always works)."),
  "monitor-interval": cfg.int(1, 3600).default(5).describe("Seconds between health checks of a node."),
  "monitor-threshold": cfg.int(1, 100).default(3).describe("Failed checks in a row that mark a node down."),
  "monitor-read-timeout": cfg
    .int(10, 60_000)
    .default(1000)
    .describe("Milliseconds a node has to answer a ping."),
  "monitor-retry-wait": cfg
    .int(10, 60_000)
    .default(500)
    .describe("Milliseconds before a failed check is retried."),
  "max-connection": cfg.int(1, 1_000_000).default(128).describe("Admin connections served at once."),
  "net-read-timeout": cfg
    .int(1, 2_147_483)
    .default(600)
    .describe("Seconds an admin connection may stay idle."),
  "partition-size": cfg
    .int(1, 1_000_000)
    .default(1024)
    .describe("Most partitions the key resolver supports."),
  "partition-type": z.enum(["modular"]).default("modular").describe("Key resolver: modular (the only one)."),
  "partition-modular-hint": cfg.int(1, 1_000_000).default(1).describe("Modular resolver hint."),
  "partition-modular-virtual": cfg
    .int(1, 10_000_000)
    .default(4096)
    .describe("Modular resolver virtual buckets."),
  "partition-auto-activate": cfg
    .bool()
    .default(true)
    .describe(
      "Activate a new partition as soon as its master has copied its keys (ready); off: wait for `node state <host> <port> active`, as Flare does.",
    ),
  "key-hash-algorithm": z
    .enum(HASH_ALGORITHMS)
    .default("simple")
    .describe("Key hash: simple, crc32 or jenkins."),
});

export type IndexConfig = z.infer<typeof indexSchema>;

const ignored = new Set([
  "log-facility",
  "thread-pool-size",
  "stack-size",
  "server-socket",
  "daemonize",
  "pid",
  "stderr",
]);

export const indexConfigSpec: ConfigSpec<typeof indexSchema.shape> = {
  role: "index",
  schema: indexSchema,
  ignored,
};
