/**
 * flared's configuration keys that every memcached front reads, node and proxy alike (where it
 * listens, how it joins the index, its limits), and the flared keys that have no effect here. A
 * flared config file runs unchanged under either role.
 */
import { clusterSecretKeys } from "./cluster-secret.js";
import { cfg } from "./config.js";
import { ConfigError } from "./errors.js";

export const frontKeys = {
  "server-name": cfg
    .str()
    .default("localhost")
    .describe("This process's name; with server-port it is its identity in the cluster."),
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
    .describe("Index servers host:port[,host:port]; unset = a standalone node."),
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
  "back-log": cfg
    .int(1, 65535)
    .default(1024)
    .describe("Listen backlog: connections waiting to be accepted (Flare: 30, memcached: 1024)."),
  "item-size-max": cfg
    .bytes(1024, 1024 ** 3)
    .default(1024 * 1024)
    .describe("Largest value accepted."),
  "key-max-length": cfg.int(1, 65535).default(250).describe("Longest key accepted, in bytes."),
  "max-line-length": cfg
    .bytes(1024, 64 * 1024 ** 2)
    .default(64 * 1024)
    .describe("Longest request line; longer closes the connection."),
};

/**
 * How requests are passed on to the node that serves their key: by a proxy, and by a node that
 * is asked for a key it does not serve (Flare's proxy-concurrency).
 */
export const forwardKeys = {
  "proxy-concurrency": cfg
    .int(1, 64)
    .default(2)
    .describe("Connections to each node requests are passed on to."),
  "proxy-request-timeout": cfg
    .int(10, 60_000)
    .default(1000)
    .describe("Milliseconds a node has to answer a request passed on to it."),
  "proxy-write-wait": cfg
    .int(0, 600_000)
    .default(6000)
    .describe("Milliseconds a write passed on waits for a new master when its master is unreachable."),
};

/**
 * The index servers a node or proxy follows: `index-servers` (any number; with several, they share
 * one map in etcd and whichever leads takes changes), else Flare's single `index-server-name`.
 * Empty: a standalone node.
 */
export function indexServers(config: {
  "index-servers"?: string | undefined;
  "index-server-name"?: string | undefined;
  "index-server-port": number;
}): { host: string; port: number }[] {
  const list = config["index-servers"];
  if (list === undefined) {
    const host = config["index-server-name"];
    return host === undefined ? [] : [{ host, port: config["index-server-port"] }];
  }
  return list.split(",").map((entry) => {
    const m = /^(.+):(\d{1,5})$/.exec(entry.trim());
    if (m === null) throw new ConfigError(`index-servers: expected host:port[,host:port...] (got '${list}')`);
    return { host: m[1] as string, port: Number(m[2]) };
  });
}

/** flared keys accepted so Flare config files run unchanged; they have no effect here. */
export const flaredIgnored: ReadonlySet<string> = new Set([
  "log-facility",
  "thread-pool-size",
  "stack-size",
  "mutex-slot",
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

/**
 * flared's storage and replication keys: a node's own; a proxy accepts them with a notice (its
 * config test checks this list is exactly the node's keys a front does not have).
 */
export const flaredStorageKeys: ReadonlySet<string> = new Set([
  "data-dir",
  "storage-type",
  "redis-url",
  "redis-prefix",
  "redis-timeout",
  "expiry-sweep-interval",
  "memory-limit",
  "replication-type",
  "master-lease",
  "engine-ping-timeout",
  "replication-log-size",
  "reconstruction-interval",
  "reconstruction-bwlimit",
  "storage-cache-size",
]);
