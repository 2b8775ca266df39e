/**
 * The proxy's configuration: flared's keys that make sense for a proxy (it reads a flared config
 * file unchanged), plus its own timing keys.
 */
import type { z } from "zod";
import { type ConfigSpec, cfg } from "../common/config.js";
import { flaredIgnored, nodeSchema } from "../storage/config.js";

export const proxySchema = nodeSchema
  .pick({
    "server-name": true,
    "server-port": true,
    "bind-address": true,
    "cluster-token": true,
    "allow-open-bind": true,
    "http-port": true,
    "index-servers": true,
    "index-server-name": true,
    "index-server-port": true,
    "index-register-timeout": true,
    "max-connection": true,
    "net-read-timeout": true,
    "back-log": true,
    "item-size-max": true,
    "key-max-length": true,
    "max-line-length": true,
  })
  .extend({
    "proxy-concurrency": cfg.int(1, 64).default(2).describe("Connections to each node."),
    "proxy-request-timeout": cfg.int(10, 60_000).default(1000).describe("Milliseconds a node has to answer."),
    "proxy-write-wait": cfg
      .int(0, 600_000)
      .default(6000)
      .describe("Milliseconds a write waits for a new master when its master is unreachable."),
  });

export type ProxyConfig = z.infer<typeof proxySchema>;

/** flared's storage and replication keys mean nothing to a proxy; they are accepted with a notice. */
const nodeOnly = Object.keys(nodeSchema.shape).filter((key) => !Object.hasOwn(proxySchema.shape, key));
const ignored = new Set(
  [...flaredIgnored, ...nodeOnly].filter((key) => !Object.hasOwn(proxySchema.shape, key)),
);

export const proxyConfigSpec: ConfigSpec<typeof proxySchema.shape> = {
  role: "proxy",
  schema: proxySchema,
  ignored,
};
