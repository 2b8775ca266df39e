/**
 * performance.now(), read once for work done together. One read from a node answers requests of
 * many clients, and each reply that leaves is timed: the read stamps the time, and what runs inside
 * it (synchronously) takes the stamp instead of reading the clock again. A stamp is a few
 * microseconds old at most; outside a stamped stretch the clock is read.
 */
let stamp = 0;

export function now(): number {
  return stamp === 0 ? performance.now() : stamp;
}

/** Starts a stamped stretch; `unstamp` must end it before the callback returns (try/finally). */
export function stampNow(): void {
  stamp = performance.now();
}

export function unstamp(): void {
  stamp = 0;
}
