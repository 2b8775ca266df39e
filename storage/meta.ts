/**
 * What memcached's meta commands do (`mg`, `ms`, `md`, `ma`, `me`), once for every engine, over the
 * store's own primitives: versions are the cas values, writes replicate as any write does, and
 * expiry, tombstones and holds behave as for the classic commands. Each command answers with its
 * reply line (empty when quiet mode hides it) and, for `VA`, a data block.
 *
 * Stale marks and win tokens (the anti-stampede state of `md I`, `mg N`/`R`) are kept beside the
 * items, for the version they were given to: a new version of the item (any write) clears them.
 * They live on the master, which serves every meta command, and are not replicated: after a
 * failover no item is stale and no token is out, so at most one more client wins a recache.
 */
import { replyKey } from "../protocol/memcache/meta.js";
import type { MetaRequest } from "../protocol/memcache/request.js";
import type { Item } from "./engine.js";
import { expiresAt } from "./expiry.js";
import { applyDelta, type MaybePromise, type Store } from "./store.js";

export interface MetaAnswer {
  /** The reply line without its CRLF; "" when quiet mode hides it. */
  line: string;
  /** The data block of a `VA` reply. */
  value?: Uint8Array;
}

/** What a client may not give as an explicit cas (E): the top half stays for versions to grow in. */
const CLIENT_VERSION_LIMIT = 1n << 63n;
const EMPTY = Buffer.alloc(0);
const NON_NUMERIC = "CLIENT_ERROR cannot increment or decrement non-numeric value";

interface Mark {
  version: bigint;
  stale: boolean;
  /** A client was told it won the recache (W): the others hear Z. */
  tokenSent: boolean;
}

/** The marks of items that have one, oldest first; past `cap` the oldest is forgotten. */
class MetaMarks {
  private readonly marks = new Map<string, Mark>();

  constructor(private readonly cap = 100_000) {}

  /** The mark of `key` for the item of `version` (a mark of an older item is dropped). */
  get(key: string, version: bigint | undefined): Mark | undefined {
    const m = this.marks.get(key);
    if (m === undefined) return undefined;
    if (m.version === version) return m;
    this.marks.delete(key);
    return undefined;
  }

  set(key: string, mark: Mark): void {
    this.marks.delete(key);
    this.marks.set(key, mark);
    if (this.marks.size > this.cap) {
      const oldest = this.marks.keys().next().value as string;
      this.marks.delete(oldest);
    }
  }
}

export class MetaCommands {
  private readonly marks = new MetaMarks();

  constructor(private readonly store: Store) {}

  /**
   * `peer`: the request came from an authenticated cluster peer. An explicit cas (E) becomes the
   * item's version only when newer than anything the key had (versions never go back, so
   * replication stays ordered); a client's must also stay below 2^63, so that no client can push a
   * key, or the floor flush_all raises, to where versions cannot grow any more.
   */
  execute(req: MetaRequest, peer: boolean): MaybePromise<MetaAnswer> {
    const explicit = req.flags.explicit;
    if (explicit !== undefined && !peer && explicit >= CLIENT_VERSION_LIMIT)
      return { line: "CLIENT_ERROR explicit cas (E) must be below 2^63" };
    switch (req.op) {
      case "mg":
        return this.get(req);
      case "ms":
        return this.set(req);
      case "md":
        return this.delete(req);
      case "ma":
        return this.arithmetic(req);
      case "me":
        return this.debug(req);
    }
  }

  private get(req: MetaRequest): MaybePromise<MetaAnswer> {
    const f = req.flags;
    const c = this.store.counters;
    const touching = f.ttl !== undefined;
    return this.store.transact(req.key, !f.noBump, (found, now, tx) => {
      let item = found;
      let created = false;
      if (item === undefined && f.vivify !== undefined) {
        const version = tx.version(undefined, f.explicit);
        if (version !== undefined) {
          item = { value: EMPTY, flags: 0, version, expiresAt: 0, fetched: false, idleSeconds: 0 };
          created = true;
        }
      }
      if (touching) c.cmd_touch++;
      else c.cmd_get++;
      if (item === undefined) {
        if (touching) c.touch_misses++;
        else c.get_misses++;
        return { line: f.quiet ? "" : `EN${echo(req)}` };
      }
      if (touching) c.touch_hits++;
      else c.get_hits++;
      const mark = created ? undefined : this.marks.get(req.key, item.version);
      let expires = item.expiresAt;
      let won = false;
      // C: the client holds this version already, so the value is not sent again.
      const withValue = f.value && !(f.compare !== undefined && f.compare === item.version);
      let line = withValue ? `VA ${item.value.length}` : "HD";
      for (const t of f.tokens) {
        switch (t[0]) {
          case "T":
            expires = expiresAt(f.ttl as number, now);
            break;
          case "N":
            if (created) {
              expires = expiresAt(f.vivify as number, now);
              won = true;
            }
            break;
          case "R":
            // Wins when what is left of the item's life is below the token, counted in whole
            // seconds as memcached counts both.
            if (
              !mark?.tokenSent &&
              !created &&
              expires !== 0 &&
              Math.ceil(expires / 1000) < Math.ceil(expiresAt(f.recache as number, now) / 1000)
            )
              won = true;
            break;
          case "s":
            line += ` s${item.value.length}`;
            break;
          case "t":
            line += ` t${ttl(expires, now)}`;
            break;
          case "c":
            line += ` c${item.version}`;
            break;
          case "f":
            line += ` f${item.flags}`;
            break;
          case "l":
            line += ` l${item.idleSeconds ?? 0}`;
            break;
          case "h":
            line += ` h${item.fetched ? 1 : 0}`;
            break;
          case "O":
          case "k":
            line += echoed(req, t);
            break;
        }
      }
      // Z before X and W, as memcached orders them.
      if (mark?.tokenSent) line += " Z";
      if (mark?.stale) {
        line += " X";
        if (!mark.tokenSent) won = true;
      }
      if (won) line += " W";
      if (created || expires !== item.expiresAt) {
        // Read by this request unless u said not to (memcached bumps the item after the command).
        const fetched = f.noBump ? item.fetched === true : true;
        tx.put(
          { value: item.value, flags: item.flags, version: item.version, expiresAt: expires, fetched },
          !created,
        );
      }
      if (won)
        this.marks.set(req.key, { version: item.version, stale: mark?.stale ?? false, tokenSent: true });
      return withValue ? { line, value: item.value } : { line };
    });
  }

  private set(req: MetaRequest): MaybePromise<MetaAnswer> {
    const f = req.flags;
    const c = this.store.counters;
    const mode = f.mode ?? "S";
    // A cas with set or replace is memcached's `cas` (C0 included: it matches nothing).
    const cas = f.compare !== undefined && (mode === "S" || mode === "R");
    return this.store.transact(req.key, false, (item, now, tx) => {
      c.cmd_set++;
      let stored: Item | undefined;
      let code: string;
      let stale = false;
      const casAgainst =
        item === undefined || f.compare === undefined || f.compare === 0n
          ? "none"
          : f.compare === item.version
            ? "match"
            : f.invalidate && f.compare < item.version
              ? "stale"
              : "bad";
      const fresh = (version: bigint): Item => ({
        value: req.value,
        flags: f.clientFlags,
        version,
        expiresAt: expiresAt(f.ttl ?? 0, now),
      });
      if (cas) {
        if (item === undefined) {
          c.cas_misses++;
          code = "NF";
        } else if (casAgainst === "match" || casAgainst === "stale") {
          c.cas_hits++;
          code = "HD";
          const version = tx.version(item, f.explicit);
          if (version === undefined) code = "NS";
          else if (casAgainst === "stale") {
            // Kept, but stale: the older writer's value with the item's life and token.
            stored = { ...fresh(version), expiresAt: item.expiresAt };
            stale = true;
          } else stored = fresh(version);
        } else {
          c.cas_badval++;
          code = "EX";
        }
      } else if (mode === "A" || mode === "P") {
        if (item === undefined) {
          // N: an append to nothing starts the item, with N's time to live.
          const version = f.vivify === undefined ? undefined : tx.version(undefined, f.explicit);
          if (version !== undefined)
            stored = { ...fresh(version), expiresAt: expiresAt(f.vivify as number, now) };
          code = stored === undefined ? "NS" : "HD";
        } else if (casAgainst === "stale" || casAgainst === "bad") {
          code = "EX";
        } else {
          const version = tx.version(item, f.explicit);
          code = version === undefined ? "NS" : "HD";
          if (version !== undefined) {
            const value = mode === "A" ? join(item.value, req.value) : join(req.value, item.value);
            stored = { value, flags: item.flags, version, expiresAt: item.expiresAt };
          }
        }
      } else if (mode === "E" ? item !== undefined || tx.held() : mode === "R" && item === undefined) {
        code = "NS";
      } else {
        const version = tx.version(item, f.explicit);
        if (version !== undefined) stored = fresh(version);
        code = stored === undefined ? "NS" : "HD";
      }
      if (stored !== undefined) {
        tx.put(stored);
        // A stale store keeps the token the item had sent.
        if (stale)
          this.marks.set(req.key, {
            version: stored.version,
            stale: true,
            tokenSent: this.marks.get(req.key, item?.version)?.tokenSent ?? false,
          });
      }
      if (code === "HD" && f.quiet) return { line: "" };
      let line = code;
      for (const t of f.tokens) line += t[0] === "c" ? ` c${stored?.version ?? 0}` : echoed(req, t);
      return { line };
    });
  }

  private delete(req: MetaRequest): MaybePromise<MetaAnswer> {
    const f = req.flags;
    const c = this.store.counters;
    return this.store.transact(req.key, false, (item, now, tx) => {
      let code: string;
      if (item === undefined) {
        c.delete_misses++;
        code = "NF";
      } else if (f.compare !== undefined && f.compare !== item.version) {
        c.delete_misses++;
        code = "EX";
      } else if (f.invalidate) {
        // Stale, not gone: a new cas, perhaps a shorter life, and the next reader wins the recache.
        const version = tx.version(item, f.explicit);
        if (version === undefined) code = "EX";
        else {
          const expires = f.ttl !== undefined ? expiresAt(f.ttl, now) : item.expiresAt;
          tx.put({
            value: item.value,
            flags: item.flags,
            version,
            expiresAt: expires,
            fetched: item.fetched,
          });
          this.marks.set(req.key, { version, stale: true, tokenSent: false });
          code = "HD";
        }
      } else {
        tx.remove(item.version);
        c.delete_hits++;
        code = "HD";
      }
      if (code === "HD" && f.quiet) return { line: "" };
      return { line: `${code}${echo(req)}` };
    });
  }

  private arithmetic(req: MetaRequest): MaybePromise<MetaAnswer> {
    const f = req.flags;
    const c = this.store.counters;
    const decrement = f.mode === "D" || f.mode === "-";
    return this.store.transact(req.key, false, (item, now, tx) => {
      let stored: Item | undefined;
      let digits = "";
      let created = false;
      if (item === undefined) {
        if (decrement) c.decr_misses++;
        else c.incr_misses++;
        const version = f.vivify === undefined ? undefined : tx.version(undefined, f.explicit);
        if (f.vivify !== undefined && version === undefined) return { line: `NS${echo(req)}` };
        if (version === undefined) return { line: `NF${echo(req)}` };
        digits = f.initial.toString();
        stored = { value: Buffer.from(digits, "latin1"), flags: 0, version, expiresAt: 0 };
        created = true;
      } else {
        // memcached's order: an empty value is no number, then the cas, then the digits.
        if (item.value.length === 0) return { line: NON_NUMERIC };
        if (f.compare !== undefined && f.compare !== 0n && f.compare !== item.version)
          return { line: `EX${echo(req)}` };
        const counted = applyDelta(item, f.delta, decrement);
        if (counted === null) return { line: NON_NUMERIC };
        const version = tx.version(item, f.explicit);
        if (version === undefined) return { line: `EX${echo(req)}` };
        if (decrement) c.decr_hits++;
        else c.incr_hits++;
        digits = counted.next.toString();
        stored = { ...counted.item, version };
      }
      let line = f.value ? `VA ${digits.length}` : "HD";
      for (const t of f.tokens) {
        switch (t[0]) {
          case "c":
            line += ` c${stored.version}`;
            break;
          case "t":
            line += ` t${ttl(stored.expiresAt, now)}`;
            break;
          case "T":
            stored.expiresAt = expiresAt(f.ttl as number, now);
            break;
          case "N":
            if (created) stored.expiresAt = expiresAt(f.vivify as number, now);
            break;
          case "O":
          case "k":
            line += echoed(req, t);
            break;
        }
      }
      tx.put(stored);
      // memcached hides a quiet success, but not an item it created.
      if (f.quiet && !created) return { line: "" };
      return f.value ? { line, value: Buffer.from(digits, "latin1") } : { line };
    });
  }

  /** `me`: what memcached's debug line says of an item (its class is always 1 here). */
  private debug(req: MetaRequest): MaybePromise<MetaAnswer> {
    return this.store.transact(req.key, false, (item, now) => {
      if (item === undefined) return { line: "EN" };
      const key = req.flags.binary ? Buffer.from(req.key, "latin1").toString("base64") : req.key;
      // memcached prints how long ago the expiry was: negative while the item lives.
      const exp = item.expiresAt === 0 ? -1 : Math.floor((now - item.expiresAt) / 1000);
      const size = req.key.length + item.value.length + 48;
      return {
        line: `ME ${key} exp=${exp} la=${item.idleSeconds ?? 0} cas=${item.version} fetch=${item.fetched ? "yes" : "no"} cls=1 size=${size}`,
      };
    });
  }
}

/** Seconds an item has left (-1: no expiry), as memcached counts them. */
function ttl(expires: number, now: number): number {
  return expires === 0 ? -1 : Math.max(0, Math.ceil((expires - now) / 1000));
}

/** What an O (opaque) or k (key) flag puts in a reply; nothing for another flag. */
function echoed(req: MetaRequest, t: string): string {
  if (t[0] === "O") return ` ${t}`;
  if (t[0] === "k") return ` k${replyKey(req.key, req.flags.binary)}`;
  return "";
}

/** The O and k flags a reply without an item echoes, in the order sent. */
function echo(req: MetaRequest): string {
  let out = "";
  for (const t of req.flags.tokens) out += echoed(req, t);
  return out;
}

function join(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = Buffer.allocUnsafe(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}
