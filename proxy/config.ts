/**
 * The proxy's configuration: flared's keys that make sense for a proxy (it reads a flared config
 * file unchanged), plus its own timing keys.
 */
import { z } from "zod";
import { type ConfigSpec, cfg } from "../common/config.js";
import { flaredIgnored, flaredStorageKeys, frontKeys } from "../common/flared-config.js";

export const proxySchema = z.object({
  ...frontKeys,
  "proxy-concurrency": cfg.int(1, 64).default(2).describe("Connections to each node."),
  "proxy-request-timeout": cfg.int(10, 60_000).default(1000).describe("Milliseconds a node has to answer."),
  "proxy-write-wait": cfg
    .int(0, 600_000)
    .default(6000)
    .describe("Milliseconds a write waits for a new master when its master is unreachable."),
});

export type ProxyConfig = z.infer<typeof proxySchema>;

/** flared's storage and replication keys mean nothing to a proxy; they are accepted with a notice. */
const ignored = new Set(
  [...flaredIgnored, ...flaredStorageKeys].filter((key) => !Object.hasOwn(proxySchema.shape, key)),
);

export const proxyConfigSpec: ConfigSpec<typeof proxySchema.shape> = {
  role: "proxy",
  schema: proxySchema,
  ignored,
};
