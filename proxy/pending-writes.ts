/**
 * Writes in flight, by key. A read of a key sent after a write of it (pipelined, maybe on another
 * connection) waits for that write, so a client reads what it just wrote, as memcached's in-order
 * processing gives.
 */
export class PendingWrites {
  private readonly counts = new Map<string, number>();
  private readonly waiters = new Map<string, (() => void)[]>();

  get size(): number {
    return this.counts.size;
  }

  has(key: string): boolean {
    return this.counts.has(key);
  }

  begin(key: string): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }

  end(key: string): void {
    const n = (this.counts.get(key) ?? 1) - 1;
    if (n > 0) {
      this.counts.set(key, n);
      return;
    }
    this.counts.delete(key);
    const waiting = this.waiters.get(key);
    if (waiting === undefined) return;
    this.waiters.delete(key);
    for (const w of waiting) w();
  }

  /** Resolves once no write of any of `keys` that began before this call is in flight. */
  settled(keys: readonly string[]): Promise<void> {
    const busy = keys.filter((k) => this.counts.has(k));
    return Promise.all(
      busy.map(
        (k) =>
          new Promise<void>((resolve) => {
            const list = this.waiters.get(k);
            if (list === undefined) this.waiters.set(k, [resolve]);
            else list.push(resolve);
          }),
      ),
    ).then(() => undefined);
  }
}
