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

/** What a request touches: nothing (the proxy answers it), reads or writes of keys, every key. */
export const NONE = 0;
export const READ = 1;
export const WRITE = 2;
export const ALL = 3;
export type Touch = typeof NONE | typeof READ | typeof WRITE | typeof ALL;

/** A request's keys: one key as itself, so that the usual request makes no array. */
export type Keys = string | readonly string[];

export function touchOf(req: Request): Touch {
  if (req.op === "get" || req.op === "gets") return READ;
  if (req.op === "flush_all") return ALL;
  return WRITE_OPS.has(req.op) ? WRITE : NONE;
}

export function keysOf(req: Request): Keys {
  return "keys" in req ? req.keys : "key" in req ? req.key : "";
}

/**
 * Up to this many requests in flight, a new one is checked against each of them: a short scan
 * costs less than keeping counts by key. A deeper pipeline keeps counts until it drains.
 */
const SCAN_LIMIT = 32;

interface Counts {
  reads: Map<string, number>;
  writes: Map<string, number>;
}

export class ConnectionOrder {
  private inflight = 0;
  private writing = 0;
  private flushing = 0;
  /** The requests in flight by slot: what each touches (NONE: a free slot), and its keys. */
  private readonly touches: Touch[] = [];
  private readonly keys: Keys[] = [];
  private readonly free: number[] = [];
  /** Past SCAN_LIMIT in flight: how many requests in flight read and write each key. */
  private counts: Counts | undefined;
  /** Requests held (waiting for their turn), and the end of their line. */
  private held = 0;
  private tail: Promise<void> = Promise.resolve();
  private idle: (() => void)[] = [];

  /** Must a request that `touch`es `keys` wait for what is in flight (or already held)? */
  mustWait(touch: Touch, keys: Keys): boolean {
    if (this.held > 0) return true;
    if (this.inflight === 0) return false;
    if (touch === ALL || this.flushing > 0) return true;
    if (touch === READ && this.writing === 0) return false;
    const counts = this.counts;
    if (counts !== undefined) {
      if (typeof keys === "string") return counted(counts, touch, keys);
      for (const key of keys) if (counted(counts, touch, key)) return true;
      return false;
    }
    const touches = this.touches;
    for (let slot = 0; slot < touches.length; slot++) {
      const t = touches[slot];
      if (t === NONE || (t === READ && touch === READ)) continue;
      if (overlaps(this.keys[slot] as Keys, keys)) return true;
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

  /** A request was sent; `end(slot)` (the slot returned) once it is answered. */
  begin(touch: Touch, keys: Keys): number {
    this.inflight++;
    if (touch === WRITE) this.writing++;
    else if (touch === ALL) this.flushing++;
    const slot = this.free.pop() ?? this.touches.length;
    this.touches[slot] = touch;
    this.keys[slot] = keys;
    if (this.counts !== undefined) count(this.counts, touch, keys, 1);
    else if (this.inflight > SCAN_LIMIT) {
      const counts: Counts = { reads: new Map(), writes: new Map() };
      this.touches.forEach((t, i) => {
        count(counts, t, this.keys[i] as Keys, 1);
      });
      this.counts = counts;
    }
    return slot;
  }

  end(slot: number): void {
    const touch = this.touches[slot] as Touch;
    if (this.counts !== undefined) count(this.counts, touch, this.keys[slot] as Keys, -1);
    this.touches[slot] = NONE;
    this.keys[slot] = "";
    this.free.push(slot);
    this.inflight--;
    if (touch === WRITE) this.writing--;
    else if (touch === ALL) this.flushing--;
    if (this.inflight > 0) return;
    if (this.counts !== undefined) {
      // Drained after a deep pipeline: back to scanning a few slots.
      this.counts = undefined;
      this.touches.length = this.keys.length = this.free.length = 0;
    }
    if (this.idle.length > 0) {
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

function overlaps(a: Keys, b: Keys): boolean {
  if (typeof a === "string") return typeof b === "string" ? a === b : b.includes(a);
  if (typeof b === "string") return a.includes(b);
  for (const key of b) if (a.includes(key)) return true;
  return false;
}

/** Does a request that `touch`es `key` conflict with the requests counted? */
function counted(counts: Counts, touch: Touch, key: string): boolean {
  return counts.writes.has(key) || (touch === WRITE && counts.reads.has(key));
}

function count(counts: Counts, touch: Touch, keys: Keys, delta: 1 | -1): void {
  if (touch !== READ && touch !== WRITE) return;
  const map = touch === READ ? counts.reads : counts.writes;
  for (const key of typeof keys === "string" ? [keys] : keys) {
    const n = (map.get(key) ?? 0) + delta;
    if (n > 0) map.set(key, n);
    else map.delete(key);
  }
}
