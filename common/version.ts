/** Reported by `version` and `stats`. Kept in step with package.json by test/version.test.ts. */
export const VERSION = "flare-ts-0.1.0";

/**
 * What `version` and `stats`' version answer on the memcached ports: the memcached release whose
 * protocol flare-ts follows (and is compared with). Clients parse it as numbers (libmemcached
 * before stats, ping and dumps; PHP's getVersion), so `flare-ts-...` broke them; flare-ts's own
 * version is `stats`' `flare_ts_version`.
 */
export const PROTOCOL_VERSION = "1.6.18";
