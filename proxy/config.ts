/** The proxy's configuration: flared's keys that make sense for it, plus its own timing keys. */
import { z } from "zod";
import { type ConfigSpec, cfg } from "../common/config.js";

export const proxySchema = z.object({
  "server-name": cfg.str().default("localhost").describe("The proxy's name in the node map."),
  "server-port": cfg
    .int(0, 65535)
    .default(12121)
    .describe("memcached text protocol port (0 = any free port)."),
  "bind-address": cfg.str().default("127.0.0.1").describe("Address the proxy listens on."),
  "http-port": cfg
    .int(0, 65535)
    .optional()
    .describe("HTTP API port; unset = no HTTP API, 0 = any free port."),
  "index-servers": cfg.str().optional().describe("Index servers host:port[,host:port] (the first is used)."),
  "index-server-name": cfg.str().optional().describe("Index server host."),
  "index-server-port": cfg.int(1, 65535).default(12120).describe("Index server port."),
  "index-register-timeout": cfg
    .int(1, 3600)
    .default(15)
    .describe("Seconds to keep asking the index to register."),
  "max-connection": cfg.int(1, 1_000_000).default(128).describe("Client connections served at once."),
  "net-read-timeout": cfg
    .int(1, 2_147_483)
    .default(600)
    .describe("Seconds a client connection may stay idle."),
  "back-log": cfg.int(1, 65535).default(30).describe("Listen backlog."),
  "proxy-concurrency": cfg.int(1, 64).default(2).describe("Connections to each node."),
  "proxy-request-timeout": cfg.int(10, 60_000).default(1000).describe("Milliseconds a node has to answer."),
  "proxy-write-wait": cfg
    .int(0, 600_000)
    .default(6000)
    .describe("Milliseconds a write waits for a new master when its master is unreachable."),
  "item-size-max": cfg
    .bytes(1024, 1024 ** 3)
    .default(1024 * 1024)
    .describe("Largest value accepted."),
  "key-max-length": cfg.int(1, 65535).default(250).describe("Longest key accepted, in bytes."),
  "max-line-length": cfg
    .bytes(1024, 64 * 1024 ** 2)
    .default(64 * 1024)
    .describe("Longest request line."),
});

export type ProxyConfig = z.infer<typeof proxySchema>;

/** A flared config file starts a proxy unchanged: its storage keys mean nothing to a proxy. */
const ignored = new Set([
  "data-dir",
  "storage-type",
  "storage-ap",
  "storage-fp",
  "storage-bucket-size",
  "storage-cache-size",
  "storage-compress",
  "storage-large",
  "storage-lmemb",
  "storage-nmemb",
  "storage-dfunit",
  "mutex-slot",
  "thread-pool-size",
  "stack-size",
  "log-facility",
  "replication-type",
  "reconstruction-interval",
  "reconstruction-bwlimit",
  "noreply-window-limit",
  "proxy-prior-netmask",
  "max-total-thread-queue",
  "server-socket",
  "daemonize",
  "pid",
  "stderr",
]);

export const proxyConfigSpec: ConfigSpec<typeof proxySchema.shape> = {
  role: "proxy",
  schema: proxySchema,
  ignored,
};
