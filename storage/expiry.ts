/** memcached's expiry rule: 0 never, up to 30 days relative, larger absolute Unix time, negative past. */
const RELATIVE_LIMIT_S = 60 * 60 * 24 * 30;

/** Converts a protocol exptime (seconds) to an absolute Unix time in ms (0 = never). */
export function expiresAt(exptime: number, nowMs: number): number {
  if (exptime === 0) return 0;
  if (exptime < 0) return 1;
  if (exptime <= RELATIVE_LIMIT_S) return nowMs + exptime * 1000;
  // An absolute time already past is still "expired", never "forever".
  return Math.max(exptime * 1000, 1);
}

export function isExpired(expires: number, nowMs: number): boolean {
  return expires !== 0 && expires <= nowMs;
}
