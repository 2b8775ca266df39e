/**
 * The proxy's configuration: flared's keys that make sense for a proxy (it reads a flared config
 * file unchanged), plus its own timing keys.
 */
import { z } from "zod";
import type { ConfigSpec } from "../common/config.js";
import { flaredIgnored, flaredStorageKeys, forwardKeys, frontKeys } from "../common/flared-config.js";

export const proxySchema = z.object({
  ...frontKeys,
  ...forwardKeys,
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
