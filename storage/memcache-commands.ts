/**
 * Executes parsed memcached requests against the store and writes their replies. Typed errors are
 * mapped here, once, to the protocol's reply lines.
 */
import { FlareError } from "../common/errors.js";
import type { Logger } from "../common/log.js";
import { PROTOCOL_VERSION } from "../common/version.js";
import { type HashAlgorithm, ModularResolver } from "../protocol/key-hash.js";
import { ReplyBuffer } from "../protocol/memcache/reply.js";
import { type Request, WRITE_OPS } from "../protocol/memcache/request.js";
import type {
  CommandHandler,
  ConnectionState,
  Execution,
  FOLLOWS,
  Later,
  ServerCounters,
} from "../protocol/memcache/server.js";
import {
  frontStats,
  processStats,
  type StatPairs,
  type StatsSource,
  writeStats,
} from "../protocol/memcache/stats.js";
import type { Item } from "./engine.js";
import { ELSEWHERE, type Forwarding, type MultiRead, SPLIT } from "./forwarding.js";
import { type MetaAnswer, MetaCommands } from "./meta.js";
import type { Replicator } from "./replicator.js";
import type { MaybePromise, Store } from "./store.js";

const yes = (): true => true;

/** A meta command's answer on the wire: its line (none when quiet hid it), then a VA's data block. */
function metaReply(answer: MetaAnswer, out: ReplyBuffer): true {
  if (answer.line === "") return true;
  out.line(answer.line);
  if (answer.value !== undefined) {
    out.bytes(answer.value);
    out.line("");
  }
  return true;
}

/** Writes the reply line of a result, now or when it arrives; nothing with noreply. */
function reply<T>(
  result: MaybePromise<T>,
  out: ReplyBuffer,
  noreply: boolean,
  line: (r: T) => string,
): Execution {
  if (result instanceof Promise) {
    return result.then((r) => {
      if (!noreply) out.line(line(r));
      return true;
    });
  }
  if (!noreply) out.line(line(result));
  return true;
}

/** What `stats` reports beyond the store: the process and its connections. */
export interface NodeInfo extends ServerCounters {
  readonly version: string;
  readonly startedAt: number;
  readonly maxConnections: number;
  readonly itemSizeMax: number;
  readonly mapVersion: () => number;
  /** How long `ping` waits for the engine before it answers that the node is unwell. */
  readonly pingTimeoutMs: number;
}

/** What the commands need of a node's cluster membership (absent on a standalone node). */
export interface Membership {
  /** Why a write of `key` is refused here (undefined: allowed); `from`: the peer that replicated it. */
  writeRefusal(from: string | undefined, key?: string): string | undefined;
  /**
   * Which keys this node's partition owns now, when that is not all it holds: keys left behind
   * by a partition that was added hold old values and must not be copied anywhere.
   */
  owned(): ((key: string) => boolean) | undefined;
  /** The index pinged this node at `sentAt` (its clock, ms), over an authenticated connection. */
  heardFromIndex(sentAt: number): void;
  /** A replicated write numbered `seq` by the master arrived (in order). */
  replicated(seq: number): void;
  /** The highest master sequence number this node has applied. */
  readonly replicationSeq: number;
  /** The node's view of the map, as `stats nodes` lines. */
  statsNodes(): string[];
  sync(version: number, lines: string[]): string;
}

export class MemcacheCommands implements CommandHandler {
  /** Set on a node in a cluster: where requests for keys it does not serve go. */
  forwarding: Forwarding | undefined;
  /** Set on a node in a cluster: how its writes reach its slaves. */
  replication: { replicator: Replicator; mode: "async" | "sync" } | undefined;
  /** The dump running, if any: a storage iteration at a time, the next waits its turn. */
  private dumping: Promise<unknown> = Promise.resolve();
  /** How keys map to partitions (from the index's meta); dumps of one partition filter by it. */
  partitioning: { algorithm: HashAlgorithm; resolver: ModularResolver } = {
    algorithm: "simple",
    resolver: new ModularResolver(),
  };

  private readonly meta: MetaCommands;

  constructor(
    private readonly store: Store,
    private readonly info: NodeInfo,
    private readonly log: Logger,
    private readonly member?: Membership,
  ) {
    this.meta = new MetaCommands(store);
  }

  /**
   * Writes the reply of `req` to `out`. Returns false when the connection must close afterwards,
   * or a promise of that when the engine answers later (the reply is in `out` when it settles).
   */
  execute(
    req: Request,
    out: ReplyBuffer,
    stream?: () => Promise<void>,
    _packet?: number,
    conn?: ConnectionState,
  ): Execution | Later | typeof FOLLOWS {
    const forwarding = this.forwarding;
    if (forwarding !== undefined && conn?.peer === false) {
      const route = forwarding.route(req, conn);
      // Packet 0: a forwarded request never joins another's run, as local replies may come between.
      if (route === ELSEWHERE) return forwarding.commands.execute(req, out, stream, 0, conn);
      if (route === SPLIT)
        return forwarding.splitRead(req as MultiRead, out, conn, (part, partOut) =>
          this.execute(part, partOut),
        );
    }
    // The hot path: a read is neither fenced nor replicated.
    if (req.op === "get" || req.op === "gets") {
      try {
        const r = this.apply(req, out);
        return typeof r === "boolean" ? r : r.catch((err: unknown) => this.fail(req, out, err));
      } catch (err) {
        return this.fail(req, out, err);
      }
    }
    const repl = this.replication;
    const peer = conn?.peer === true;
    if (repl?.replicator.active && WRITE_OPS.has(req.op)) return this.replicated(req, out, repl, peer);
    if (req.op === "dump") {
      const turn = this.dumping.then(() => this.dump(req, out, stream));
      this.dumping = turn.catch(() => undefined);
      return turn.catch((err: unknown) => this.fail(req, out, err));
    }
    try {
      const r = this.run(req, out, peer);
      return typeof r === "boolean" ? r : r.catch((err: unknown) => this.fail(req, out, err));
    } catch (err) {
      return this.fail(req, out, err);
    }
  }

  /**
   * A write on a master with slaves: the reply waits until the slaves applied it (sync), or until
   * they are within the replication log's reach (async backpressure).
   */
  private replicated(
    req: Request,
    out: ReplyBuffer,
    repl: { replicator: Replicator; mode: "async" | "sync" },
    peer: boolean,
  ): Execution {
    const held = new ReplyBuffer();
    const mode = ("sync" in req && req.sync) || repl.mode;
    const finish = (keep: boolean): Execution => {
      const wait = repl.replicator.acknowledged(mode);
      if (wait === undefined) {
        out.append(held);
        return keep;
      }
      return wait.then(
        () => {
          out.append(held);
          return keep;
        },
        // Not every slave has it: the client must not be told it is stored.
        (err: Error) => {
          if (!("noreply" in req && req.noreply)) out.line(`SERVER_ERROR ${err.message}`);
          return keep;
        },
      );
    };
    let r: Execution;
    try {
      r = this.run(req, held, peer);
    } catch (err) {
      return this.fail(req, out, err);
    }
    return typeof r === "boolean"
      ? finish(r)
      : r.then(finish).catch((err: unknown) => this.fail(req, out, err));
  }

  /**
   * Flare's dump: every live item (of one partition when asked) as
   * `VALUE <key> <flags> <bytes> <version> <expire>` + data (dump_key: `KEY <key>`), then END;
   * `wait` µs per item and `bwlimit` KB/s throttle it. One at a time per node (the next waits).
   */
  private async dump(
    req: Extract<Request, { op: "dump" }>,
    out: ReplyBuffer,
    stream?: () => Promise<void>,
  ): Promise<boolean> {
    const started = performance.now();
    let bytes = 0;
    let count = 0;
    let owedMs = 0;
    const owns = this.member?.owned();
    for await (const [key, item] of this.store.engine.scan()) {
      const now = Date.now();
      if (item.expiresAt !== 0 && item.expiresAt <= now) continue;
      if (owns !== undefined && !owns(key)) continue;
      if (
        req.partition >= 0 &&
        this.partitioning.resolver.partitionOf(key, this.partitioning.algorithm, req.size) !== req.partition
      )
        continue;
      if (req.keysOnly) {
        out.line(`KEY ${key}`);
        bytes += key.length + 6;
      } else {
        const expire = item.expiresAt === 0 ? 0 : Math.ceil(item.expiresAt / 1000);
        out.line(`VALUE ${key} ${item.flags} ${item.value.length} ${item.version} ${expire}`);
        out.bytes(item.value);
        out.line("");
        bytes += key.length + item.value.length + 40;
      }
      count++;
      owedMs += req.wait / 1000;
      if (req.bwlimit > 0) {
        const dueMs = (bytes / (req.bwlimit * 1024)) * 1000 - (performance.now() - started);
        if (dueMs > owedMs) owedMs = dueMs;
      }
      // Sleep only once the debt is worth a timer (rsync's limiter does the same).
      if (owedMs >= 10) {
        if (stream) await stream();
        await new Promise((r) => setTimeout(r, owedMs));
        owedMs = 0;
      } else if (count % 512 === 0 && stream) {
        await stream();
      }
    }
    out.line("END");
    return true;
  }

  private fail(req: Request, out: ReplyBuffer, err: unknown): true {
    if (err instanceof FlareError) {
      out.line(`SERVER_ERROR ${err.message}`);
    } else {
      this.log.error("command failed", { op: req.op, err });
      out.line("SERVER_ERROR internal error");
    }
    return true;
  }

  private run(req: Request, out: ReplyBuffer, peer = false): Execution {
    const member = this.member;
    if (member === undefined || !WRITE_OPS.has(req.op)) return this.apply(req, out, peer);
    const from = "proxied" in req ? req.proxied : undefined;
    const refusal = member.writeRefusal(from, "key" in req ? req.key : undefined);
    if (refusal !== undefined) {
      if (!("noreply" in req && req.noreply)) out.line(`SERVER_ERROR ${refusal}`);
      return true;
    }
    const seq = from !== undefined && "seq" in req ? req.seq : undefined;
    if (seq === undefined) return this.apply(req, out, peer);
    // Progress counts once the write is applied (durably, on engines that wait for it): the index
    // promotes the slave with the most, so it must never claim a write it may not have.
    const r = this.apply(req, out, peer);
    if (typeof r === "boolean") {
      member.replicated(seq);
      return r;
    }
    return r.then((keep) => {
      member.replicated(seq);
      return keep;
    });
  }

  private apply(req: Request, out: ReplyBuffer, peer = false): Execution {
    const store = this.store;
    switch (req.op) {
      case "get":
      case "gets":
      case "gat":
      case "gats": {
        const withCas = req.op === "gets" || req.op === "gats";
        const touch = req.op === "gat" || req.op === "gats";
        const keys = req.keys;
        let items: MaybePromise<Item | undefined>[] | undefined;
        let waiting = false;
        if (keys.length === 1 && !touch) {
          // The hot path: one key, nothing to wait for; on the memory engine, nothing copied twice.
          if (!withCas && store.viewable) {
            const v = store.view(keys[0] as string);
            if (v !== undefined) out.valueOf(keys[0] as string, v.flags, v.buf, v.start, v.end);
            out.line("END");
            return true;
          }
          const item = store.get(keys[0] as string);
          if (!(item instanceof Promise)) {
            if (item !== undefined)
              out.value(keys[0] as string, item.flags, item.value, withCas ? item.version : undefined);
            out.line("END");
            return true;
          }
          items = [item];
          waiting = true;
        } else {
          items = keys.map((key) => {
            const item = touch
              ? store.getAndTouch(key, (req as { exptime: number }).exptime)
              : store.get(key);
            if (item instanceof Promise) waiting = true;
            return item;
          });
        }
        const write = (found: (Item | undefined)[]): true => {
          for (let i = 0; i < found.length; i++) {
            const item = found[i];
            if (item !== undefined)
              out.value(keys[i] as string, item.flags, item.value, withCas ? item.version : undefined);
          }
          out.line("END");
          return true;
        };
        return waiting ? Promise.all(items).then(write) : write(items as (Item | undefined)[]);
      }
      case "set":
      case "add":
      case "replace":
      case "append":
      case "prepend":
      case "cas": {
        const result = store.store(req.op, req.key, req.value, req.flags, req.exptime, req.version);
        if (req.noreply) return result instanceof Promise ? result.then(yes) : true;
        if (!(result instanceof Promise)) {
          out.line(result);
          return true;
        }
        return result.then((r) => {
          out.line(r);
          return true;
        });
      }
      case "incr":
      case "decr":
        return reply(store.arithmetic(req.key, req.delta, req.op === "decr"), out, req.noreply, (r) =>
          r === "NON_NUMERIC"
            ? "CLIENT_ERROR cannot increment or decrement non-numeric value"
            : typeof r === "bigint"
              ? r.toString()
              : r,
        );
      case "delete":
        return reply(store.delete(req.key, req.hold, req.version), out, req.noreply, String);
      case "touch":
        return reply(store.touch(req.key, req.exptime), out, req.noreply, (t) =>
          t ? "TOUCHED" : "NOT_FOUND",
        );
      case "flush_all":
        return reply(store.flush(req.delay), out, req.noreply, () => "OK");
      case "stats":
        writeStats(req.args, this.statsSource, out);
        return true;
      case "version":
        out.line(`VERSION ${PROTOCOL_VERSION}`);
        return true;
      case "verbosity":
        if (!req.noreply) out.line("OK");
        return true;
      case "ping":
        // The index's ping renews a master's lease only when the node is fit to serve (it says OK).
        return reply(store.healthy(this.info.pingTimeoutMs), out, false, (ok) => {
          if (!ok) return "SERVER_ERROR storage error";
          if (req.sentAt !== undefined) this.member?.heardFromIndex(req.sentAt);
          return "OK";
        });
      case "dump":
        // Handled in execute (it streams); unreachable here.
        return true;
      case "node_sync":
        out.line(
          this.member === undefined
            ? "SERVER_ERROR not in a cluster"
            : this.member.sync(req.version, req.lines),
        );
        return true;
      case "mg":
      case "ms":
      case "md":
      case "ma":
      case "me": {
        const answer = this.meta.execute(req, peer);
        return answer instanceof Promise ? answer.then((a) => metaReply(a, out)) : metaReply(answer, out);
      }
      case "quit":
        return false;
      case "reply":
        out.line(req.line);
        return true;
    }
  }

  /** What `stats` reports of this node. */
  private readonly statsSource: StatsSource = {
    server: () => this.info,
    general: () => this.general(),
    settings: () => this.settings(),
    reset: () => this.store.counters.reset(),
    nodes: () => this.member?.statsNodes() ?? [],
    replication: () =>
      Object.entries(this.replication?.replicator.lag() ?? {}).map(([peer, queued]) => ({ peer, queued })),
  };

  private general(): StatPairs {
    const engine = this.store.engine.stats();
    const c = this.store.counters;
    return [
      ...processStats(this.info.startedAt, this.info.version, this.info.maxConnections, this.info),
      ["cmd_get", c.cmd_get],
      ["cmd_set", c.cmd_set],
      ["cmd_flush", c.cmd_flush],
      ["cmd_touch", c.cmd_touch],
      ["get_hits", c.get_hits],
      ["get_misses", c.get_misses],
      ["get_expired", c.get_expired],
      ["get_flushed", c.get_flushed],
      ["delete_misses", c.delete_misses],
      ["delete_hits", c.delete_hits],
      ["incr_misses", c.incr_misses],
      ["incr_hits", c.incr_hits],
      ["decr_misses", c.decr_misses],
      ["decr_hits", c.decr_hits],
      ["cas_misses", c.cas_misses],
      ["cas_hits", c.cas_hits],
      ["cas_badval", c.cas_badval],
      ["touch_hits", c.touch_hits],
      ["touch_misses", c.touch_misses],
      ...frontStats(this.info),
      ["limit_maxbytes", engine.limitBytes],
      ["bytes", engine.bytes],
      ["curr_items", engine.items],
      ["total_items", c.total_items],
      ["expired_unfetched", c.expired_unfetched],
      ["evictions", engine.evictions],
      ["engine", this.store.engine.kind],
      ["node_map_version", this.info.mapVersion()],
      ...(this.member ? ([["replication_seq", this.member.replicationSeq]] as [string, number][]) : []),
      ...Object.entries(this.replication?.replicator.lag() ?? {}).map(([slave, lag]): [string, number] => [
        `replication_lag:${slave}`,
        lag,
      ]),
    ];
  }

  private settings(): StatPairs {
    const engine = this.store.engine.stats();
    return [
      ["maxbytes", engine.limitBytes],
      ["maxconns", this.info.maxConnections],
      ["item_size_max", this.info.itemSizeMax],
      ["evictions", "on"],
      ["cas_enabled", "yes"],
      ["engine", this.store.engine.kind],
    ];
  }
}
