/**
 * Per-key FIFO serialization for asynchronous engines: a command on a key starts when the previous
 * command on that key has finished (Flare's mutex-slot, without a fixed number of stripes).
 */
export class KeyLocks {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<R>(key: string, task: () => Promise<R>): Promise<R> {
    const previous = this.tails.get(key);
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
}
