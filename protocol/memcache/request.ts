import type { PeerRole } from "../cluster-auth.js";
import type { MetaFlags } from "./meta.js";

/** Requests of the memcached text protocol (plus Flare's extensions), as the parser produces them. */

export type StoreOp = "set" | "add" | "replace" | "append" | "prepend" | "cas";
/** Flare's per-request replication option. */
export type SyncOption = "sync" | "async" | undefined;

/** A meta command (`mg`, `ms`, `md`, `ma`, `me`); `mn` is a `reply`. */
export interface MetaRequest {
  op: "mg" | "ms" | "md" | "ma" | "me";
  /** The key, decoded when the request named it in base64 (flag b). */
  key: string;
  /** The key as sent. */
  wireKey: string;
  flags: MetaFlags;
  /** ms: the data block. */
  value: Buffer;
}

/**
 * `raw` (a set): the request's bytes as they arrived (line and data block), when they arrived in
 * one piece in their plainest form; a proxy forwards them instead of encoding the request again.
 */
export type Request =
  | { op: "get" | "gets"; keys: string[] }
  | { op: "gat" | "gats"; exptime: number; keys: string[] }
  | {
      op: StoreOp;
      key: string;
      flags: number;
      exptime: number;
      value: Buffer;
      /** cas unique for `cas`; Flare's optional explicit version for the others (0n = none). */
      version: bigint;
      noreply: boolean;
      sync: SyncOption;
      /** Replicated by the peer named in Flare's `<host:port>` prefix (authenticated connections only). */
      proxied?: string;
      /** The master's replication sequence number (`<host:port@seq>`). */
      seq?: number;
      raw?: Buffer;
    }
  | {
      op: "incr" | "decr";
      key: string;
      delta: bigint;
      noreply: boolean;
      sync: SyncOption;
      proxied?: string;
      seq?: number;
    }
  | {
      op: "delete";
      key: string;
      hold: number;
      version: bigint;
      noreply: boolean;
      sync: SyncOption;
      proxied?: string;
      seq?: number;
    }
  | { op: "touch"; key: string; exptime: number; noreply: boolean; proxied?: string; seq?: number }
  | { op: "flush_all"; delay: number; noreply: boolean }
  | { op: "stats"; args: string[] }
  | { op: "verbosity"; noreply: boolean }
  | { op: "version" | "quit" }
  /**
   * `from`: the cluster peer that asked; the index's pings carry when it sent them (its clock, ms),
   * and renew a master's lease from that moment.
   */
  | { op: "ping"; from?: PeerRole; sentAt?: number }
  /**
   * Flare's `dump [<wait-µs>] [<partition>] [<partition-size>] [<bwlimit-KB/s>]`, and its
   * `dump_key [<partition>] [<partition-size>] [<bwlimit>]` (`keysOnly`: KEY lines, no values).
   */
  | { op: "dump"; wait: number; partition: number; size: number; bwlimit: number; keysOnly?: boolean }
  /** Flare's map push from the index: `node sync <version>`, NODE lines, `END`. */
  | { op: "node_sync"; version: number; lines: string[] }
  | MetaRequest
  /** A request the parser already answered: the line goes out in its place, in order. */
  | { op: "reply"; line: string };

/**
 * Commands that change an item (gat and gats change its expiry), and the meta commands, which may
 * (a meta get can hand out a win token, vivify or touch) or read what only the master keeps (stale
 * marks, tokens sent): a node serves them only as a master (fencing), and on one proxy connection
 * they are ordered against other requests of the key.
 */
export const WRITE_OPS: ReadonlySet<Request["op"]> = new Set<Request["op"]>([
  "set",
  "add",
  "replace",
  "append",
  "prepend",
  "cas",
  "incr",
  "decr",
  "delete",
  "touch",
  "gat",
  "gats",
  "mg",
  "ms",
  "md",
  "ma",
  "me",
]);
