/**
 * Number arguments read as memcached reads them (its safe_strtoull, safe_strtoul and safe_strtol on
 * a 64-bit build), so a client's line means the same here as there: leading whitespace and a sign
 * are allowed, the number may be followed by whitespace and anything after it, a value out of the
 * C type's range is refused, and the 32-bit fields keep the low 32 bits of what was read.
 */

const UINT64_MAX = (1n << 64n) - 1n;
const INT64_MAX = (1n << 63n) - 1n;
const INT64_MIN = -(1n << 63n);
const SIGN_BIT = 1n << 63n;

/** C's isspace in the "C" locale. */
function isSpace(c: number): boolean {
  return c === 32 || (c >= 9 && c <= 13);
}

/** The sign and digits strtoull/strtol read from `s`, or null when they read none or stop at a non-space. */
function scan(s: string): { negative: boolean; digits: string } | null {
  const n = s.length;
  let i = 0;
  while (i < n && isSpace(s.charCodeAt(i))) i++;
  const sign = s.charCodeAt(i);
  const negative = sign === 45;
  if (negative || sign === 43) i++;
  const start = i;
  while (i < n) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) break;
    i++;
  }
  if (i === start || (i < n && !isSpace(s.charCodeAt(i)))) return null;
  return { negative, digits: s.slice(start, i) };
}

/** Digits after leading zeros: past 20 (19 signed) a number is out of range whatever they are. */
function significant(digits: string): number {
  let i = 0;
  while (i < digits.length - 1 && digits.charCodeAt(i) === 48) i++;
  return digits.length - i;
}

/** safe_strtoull: an unsigned 64-bit number; a negative sign only when the result stays below 2^63. */
export function strtoull(s: string | undefined): bigint | null {
  if (s === undefined) return null;
  const read = scan(s);
  if (read === null || significant(read.digits) > 20) return null;
  const magnitude = BigInt(read.digits);
  if (magnitude > UINT64_MAX) return null;
  if (!read.negative) return magnitude;
  const value = (UINT64_MAX + 1n - magnitude) & UINT64_MAX;
  return value >= SIGN_BIT ? null : value;
}

/** safe_strtoul into a uint32_t (memcached's flags): the low 32 bits of the 64-bit number. */
export function strtoul32(s: string | undefined): number | null {
  const v = strtoull(s);
  return v === null ? null : Number(v & 0xffffffffn);
}

/** safe_strtol into an int32_t (exptime, lengths, delays): a signed 64-bit number, its low 32 bits. */
export function strtol32(s: string | undefined): number | null {
  if (s === undefined) return null;
  const read = scan(s);
  if (read === null) return null;
  if (read.digits.length <= 9 && s.length === read.digits.length) return Number(read.digits);
  if (significant(read.digits) > 19) return null;
  const magnitude = BigInt(read.digits);
  const value = read.negative ? -magnitude : magnitude;
  if (value > INT64_MAX || value < INT64_MIN) return null;
  return Number(BigInt.asIntN(32, value));
}
