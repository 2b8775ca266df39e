/**
 * The cluster secret every role reads the same way: the `cluster-token` key (or flag), else
 * FLARE_CLUSTER_TOKEN. Without one a role runs in open mode, which it says loudly, and only on
 * loopback unless told otherwise.
 */
import { ClusterSecret } from "../protocol/cluster-auth.js";
import { cfg } from "./config.js";
import { ConfigError } from "./errors.js";
import type { Logger } from "./log.js";

export const TOKEN_ENV = "FLARE_CLUSTER_TOKEN";

/** Config keys of the secret, shared by index, node and proxy schemas. */
export const clusterSecretKeys = {
  "cluster-token": cfg
    .str()
    .optional()
    .describe(
      `Shared secret of the cluster (also ${TOKEN_ENV}); only connections that prove it may change maps, roles, versions or replicas. Unset = open mode.`,
    ),
  "allow-open-bind": cfg
    .bool()
    .default(false)
    .describe("Open mode only: allow a bind-address other than loopback (anyone who can connect may join)."),
};

export function tokenFrom(configured: string | undefined): string | undefined {
  const token = configured ?? process.env[TOKEN_ENV];
  return token === undefined || token === "" ? undefined : token;
}

export function isLoopback(address: string): boolean {
  return address === "localhost" || address === "::1" || /^127\.\d+\.\d+\.\d+$/.test(address);
}

/** The secret a role runs with; open mode refuses a public bind unless allowed. */
export function clusterSecret(config: {
  "cluster-token"?: string | undefined;
  "allow-open-bind": boolean;
  "bind-address": string;
}): ClusterSecret {
  const token = tokenFrom(config["cluster-token"]);
  if (token !== undefined) return new ClusterSecret(token);
  if (!isLoopback(config["bind-address"]) && !config["allow-open-bind"]) {
    throw new ConfigError(
      `bind-address: ${config["bind-address"]} is not loopback and no cluster-token is set; set cluster-token (or ${TOKEN_ENV}), or allow-open-bind = true to run open mode there`,
    );
  }
  return new ClusterSecret(undefined);
}

/** Open mode says so once, loudly, as the role starts serving. */
export function warnIfOpen(secret: ClusterSecret, bind: string, log: Logger): void {
  if (!secret.open) return;
  log.warn(
    "OPEN MODE: no cluster-token. Any process that can connect may join the cluster: push node maps, change roles, replicate writes, dump data. Set cluster-token (or FLARE_CLUSTER_TOKEN) on every role to close it.",
    { bind },
  );
}
