/**
 * Per-key FIFO serialization for asynchronous engines: a command on a key starts when the previous
 * command on that key has finished (Flare's mutex-slot, without a fixed number of stripes). A
 * command on every key (flush_all) starts when all before it finished, and all after it wait.
 */
export class KeyLocks {
  private readonly tails = new Map<string, Promise<unknown>>();
  /** The last command on every key, while it or a command on a key waiting for it runs. */
  private barrier: Promise<unknown> | undefined;

  run<R>(key: string, task: () => Promise<R>): Promise<R> {
    // A key without a command since the barrier waits for the barrier (which waited for its tail).
    const previous = this.tails.get(key) ?? this.barrier;
    const result = previous === undefined ? task() : previous.then(task, task);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }

  all<R>(task: () => Promise<R>): Promise<R> {
    const before = [...this.tails.values()];
    if (this.barrier !== undefined) before.push(this.barrier);
    this.tails.clear();
    const result = Promise.all(before).then(task, task);
    const barrier = result.then(
      () => undefined,
      () => undefined,
    );
    this.barrier = barrier;
    barrier.then(() => {
      if (this.barrier === barrier) this.barrier = undefined;
    });
    return result;
  }
}
