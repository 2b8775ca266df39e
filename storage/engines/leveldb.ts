/**
 * LevelDB engine on classic-level, in `<data-dir>/leveldb`. Reads are synchronous (`getSync`) so
 * the store keeps its one-tick commands; writes land in an overlay at once (later reads see them)
 * and reach LevelDB in group-committed batches, one per event-loop turn. A command's reply waits
 * for its batch (`settled`), so an acknowledged write survives `kill -9`. Tombstones and the version
 * floor are kept in the same database, so versions never go back across restarts either.
 */
import { join } from "node:path";
import { ClassicLevel } from "classic-level";
import { ServerError } from "../../common/errors.js";
import type { EngineStats, Item, SyncEngine, TombstoneJournal } from "../engine.js";
import type { Tombstone } from "../tombstones.js";
import { decodeItem, encodeItem } from "./record.js";

type Op = { type: "put"; key: Buffer; value: Buffer } | { type: "del"; key: Buffer };

/** Key spaces: d = items, t = tombstones, m = meta. */
const DATA = 0x64;
const TOMB = 0x74;
const FLOOR_KEY = Buffer.from("m:floor");

function spaced(space: number, key: string): Buffer {
  const out = Buffer.allocUnsafe(1 + key.length);
  out[0] = space;
  out.latin1Write(key, 1);
  return out;
}

interface Batch {
  ops: Op[];
  /** What this batch makes durable, to drop from the overlay once written (if not overwritten). */
  written: [string, Item | null][];
  done: Promise<void>;
  resolve: () => void;
  reject: (err: Error) => void;
}

function newBatch(): Batch {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const done = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A failed batch is reported to the commands that wait for it; none waiting is not a crash.
  done.catch(() => {});
  return { ops: [], written: [], done, resolve, reject };
}

export class LevelDbEngine implements SyncEngine, TombstoneJournal {
  readonly kind = "leveldb";
  readonly sync = true;
  private readonly db: ClassicLevel<Buffer, Buffer>;
  /** Writes not yet in LevelDB: item, or null for a deletion. */
  private readonly overlay = new Map<string, Item | null>();
  private next: Batch = newBatch();
  private writing: Batch | undefined;
  private scheduled = false;
  /** While a clear runs, LevelDB's contents are as good as gone. */
  private clearing: Promise<void> | undefined;
  private count = 0;

  private constructor(dir: string) {
    this.db = new ClassicLevel<Buffer, Buffer>(join(dir, "leveldb"), {
      keyEncoding: "buffer",
      valueEncoding: "buffer",
    });
  }

  /** Opens (or creates) the database and returns it with the tombstones it kept. */
  static async open(
    dir: string,
  ): Promise<{ engine: LevelDbEngine; tombstones: [string, Tombstone][]; floor: bigint }> {
    const engine = new LevelDbEngine(dir);
    try {
      await engine.db.open();
    } catch (err) {
      throw new ServerError("ENGINE_FAILURE", `cannot open leveldb in ${dir}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    for await (const _ of engine.db.keys({ gt: Buffer.from([DATA]), lt: Buffer.from([DATA + 1]) }))
      engine.count++;
    const tombstones: [string, Tombstone][] = [];
    for await (const [k, v] of engine.db.iterator({ gt: Buffer.from([TOMB]), lt: Buffer.from([TOMB + 1]) })) {
      tombstones.push([
        k.latin1Slice(1, k.length),
        { version: v.readBigUInt64BE(0), holdUntil: v.readDoubleBE(8) },
      ]);
    }
    const floorRaw = await engine.db.get(FLOOR_KEY);
    return { engine, tombstones, floor: floorRaw === undefined ? 0n : floorRaw.readBigUInt64BE(0) };
  }

  get(key: string): Item | undefined {
    const item = this.read(key);
    this.lastRead = key;
    this.lastReadFound = item !== undefined;
    return item;
  }

  /** The store reads a key right before it writes it: that read tells whether the put adds an item. */
  private lastRead: string | undefined;
  private lastReadFound = false;

  private read(key: string): Item | undefined {
    const pending = this.overlay.get(key);
    if (pending !== undefined) return pending ?? undefined;
    if (this.clearing !== undefined) return undefined;
    const raw = this.db.getSync(spaced(DATA, key));
    return raw === undefined ? undefined : decodeItem(raw);
  }

  put(key: string, item: Item): boolean {
    const existed = this.lastRead === key ? this.lastReadFound : this.read(key) !== undefined;
    this.lastRead = undefined;
    if (!existed) this.count++;
    this.overlay.set(key, item);
    this.enqueue({ type: "put", key: spaced(DATA, key), value: encodeItem(item) }, key, item);
    return true;
  }

  delete(key: string): boolean {
    this.lastRead = undefined;
    if (this.read(key) === undefined) return false;
    this.count--;
    this.overlay.set(key, null);
    this.enqueue({ type: "del", key: spaced(DATA, key) }, key, null);
    return true;
  }

  /**
   * Empties the items as of now: writes made before the call are written first, writes made after
   * it land after the clear. Reads see an empty database at once.
   */
  clear(): Promise<void> {
    this.lastRead = undefined;
    this.overlay.clear();
    this.count = 0;
    if (this.writing === undefined) this.write();
    const before = this.writing?.done.catch(() => {}) ?? Promise.resolve();
    const range = { gte: Buffer.from([DATA]), lt: Buffer.from([DATA + 1]) };
    const clearing = before.then(() => this.db.clear(range));
    this.clearing = clearing;
    clearing.then(
      () => this.clearDone(clearing),
      () => this.clearDone(clearing),
    );
    return clearing;
  }

  private clearDone(clearing: Promise<void>): void {
    if (this.clearing === clearing) this.clearing = undefined;
  }

  settled(): Promise<void> | undefined {
    if (this.next.ops.length > 0) return this.next.done;
    return this.writing?.done ?? this.clearing;
  }

  save(key: string, version: bigint, holdUntil: number): void {
    const value = Buffer.allocUnsafe(16);
    value.writeBigUInt64BE(version, 0);
    value.writeDoubleBE(holdUntil, 8);
    this.enqueue({ type: "put", key: spaced(TOMB, key), value });
  }

  remove(key: string): void {
    this.enqueue({ type: "del", key: spaced(TOMB, key) });
  }

  saveFloor(floor: bigint): void {
    const value = Buffer.allocUnsafe(8);
    value.writeBigUInt64BE(floor, 0);
    this.enqueue({ type: "put", key: FLOOR_KEY, value });
  }

  async *scan(): AsyncIterable<[string, Item]> {
    await this.settled();
    const it = this.db.iterator({ gt: Buffer.from([DATA]), lt: Buffer.from([DATA + 1]) });
    try {
      for (;;) {
        const entries = await it.nextv(1000);
        if (entries.length === 0) break;
        for (const [k, v] of entries) yield [k.latin1Slice(1, k.length), decodeItem(v)];
      }
    } finally {
      await it.close();
    }
  }

  stats(): EngineStats {
    return { items: this.count, bytes: 0, limitBytes: 0, evictions: 0 };
  }

  async healthy(): Promise<boolean> {
    if (this.db.status !== "open") return false;
    await this.db.get(FLOOR_KEY);
    return true;
  }

  async close(): Promise<void> {
    await this.settled();
    await this.db.close();
  }

  private enqueue(op: Op, key?: string, item?: Item | null): void {
    const batch = this.next;
    batch.ops.push(op);
    if (key !== undefined) batch.written.push([key, item ?? null]);
    if (!this.scheduled && this.writing === undefined) {
      this.scheduled = true;
      // Let the rest of this turn's commands join the batch.
      setImmediate(() => this.write());
    }
  }

  private write(): void {
    this.scheduled = false;
    const batch = this.next;
    // One batch at a time, in order; the running one starts the next when it is done.
    if (batch.ops.length === 0 || this.writing !== undefined) return;
    this.next = newBatch();
    this.writing = batch;
    const after = this.clearing?.catch(() => {}) ?? Promise.resolve();
    after
      .then(() => this.db.batch(batch.ops))
      .then(
        () => {
          for (const [key, item] of batch.written)
            if (this.overlay.get(key) === item) this.overlay.delete(key);
          batch.resolve();
        },
        (err: Error) => {
          // Nothing of the batch is in LevelDB: forget it, so reads do not serve what was never kept.
          for (const [key, item] of batch.written)
            if (this.overlay.get(key) === item) this.overlay.delete(key);
          batch.reject(
            new ServerError("ENGINE_FAILURE", `leveldb write failed: ${err.message}`, { cause: err }),
          );
        },
      )
      .finally(() => {
        this.writing = undefined;
        if (this.next.ops.length > 0) this.write();
      });
  }
}
