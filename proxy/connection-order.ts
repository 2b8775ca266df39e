/**
 * One client connection's order through the proxy. Requests go to different nodes over pooled
 * connections and reads may go to a slave, so two requests of one connection on the same key
 * could overtake each other on the way. memcached answers a connection's requests in the order
 * sent, and a read sees exactly the writes sent before it: a request that conflicts with one still
 * in flight (a write and anything else on the same key, or a flush_all and anything) is held until
 * everything before it is answered, and so is everything after it while one is held. Requests that
 * do not conflict go at once, as before.
 */
import { type Request, WRITE_OPS } from "../protocol/memcache/request.js";

/** What a request touches: reads and writes of keys, or every key (flush_all). */
export type Access =
  | { kind: "read"; keys: readonly string[] }
  | { kind: "write"; keys: readonly string[] }
  | { kind: "all" }
  | undefined;

/** undefined: answered by the proxy itself, touching no key. */
export function accessOf(req: Request): Access {
  if (req.op === "get" || req.op === "gets") return { kind: "read", keys: req.keys };
  if (req.op === "flush_all") return { kind: "all" };
  if (!WRITE_OPS.has(req.op)) return undefined;
  return { kind: "write", keys: "keys" in req ? req.keys : [(req as { key: string }).key] };
}

export class ConnectionOrder {
  private inflight = 0;
  /**
   * The one request in flight, while it is alone (the usual traffic: one request at a time): it is
   * kept as it is and goes into the maps only once another joins it.
   */
  private alone: NonNullable<Access> | undefined;
  private readonly reads = new Map<string, number>();
  private readonly writes = new Map<string, number>();
  private flushes = 0;
  /** Requests held (waiting for their turn), and the end of their line. */
  private held = 0;
  private tail: Promise<void> = Promise.resolve();
  private idle: (() => void)[] = [];

  /** Must `access` wait for what is in flight (or already held)? */
  mustWait(access: NonNullable<Access>): boolean {
    if (this.held > 0) return true;
    if (this.inflight === 0) return false;
    if (this.alone !== undefined) return conflicts(this.alone, access);
    if (access.kind === "all" || this.flushes > 0) return true;
    for (const key of access.keys) {
      if (this.writes.has(key)) return true;
      if (access.kind === "write" && this.reads.has(key)) return true;
    }
    return false;
  }

  /** Runs `send` once everything before it on the connection is answered, after earlier held ones. */
  hold<T>(send: () => T | Promise<T>): Promise<T> {
    this.held++;
    const turn = this.tail
      .then(() => this.whenIdle())
      .then(() => {
        this.held--;
        return send();
      });
    this.tail = turn.then(
      () => undefined,
      () => undefined,
    );
    return turn;
  }

  /** A request of `access` was sent; `end` (returned) is called once it is answered. */
  begin(access: NonNullable<Access>): () => void {
    if (this.inflight++ === 0) this.alone = access;
    else {
      if (this.alone !== undefined) {
        this.count(this.alone);
        this.alone = undefined;
      }
      this.count(access);
    }
    return () => this.end(access);
  }

  private count(access: NonNullable<Access>): void {
    if (access.kind === "all") this.flushes++;
    else {
      const counts = access.kind === "read" ? this.reads : this.writes;
      for (const key of access.keys) counts.set(key, (counts.get(key) ?? 0) + 1);
    }
  }

  private end(access: NonNullable<Access>): void {
    this.inflight--;
    if (this.alone === access) this.alone = undefined;
    else if (access.kind === "all") this.flushes--;
    else {
      const counts = access.kind === "read" ? this.reads : this.writes;
      for (const key of access.keys) {
        const n = (counts.get(key) ?? 1) - 1;
        if (n > 0) counts.set(key, n);
        else counts.delete(key);
      }
    }
    if (this.inflight === 0 && this.idle.length > 0) {
      const idle = this.idle;
      this.idle = [];
      for (const f of idle) f();
    }
  }

  private whenIdle(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }
}

/** Whether `next` must wait for `inflight`: a flush and anything, a write and anything on its key. */
function conflicts(inflight: NonNullable<Access>, next: NonNullable<Access>): boolean {
  if (inflight.kind === "all" || next.kind === "all") return true;
  if (inflight.kind === "read" && next.kind === "read") return false;
  for (const key of next.keys) if (inflight.keys.includes(key)) return true;
  return false;
}
