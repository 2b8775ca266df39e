/**
 * memcached's meta commands (`mg`, `ms`, `md`, `ma`, `me`; `mn` is answered by the parser): their
 * request lines read into a `MetaRequest`, refused as memcached 1.6 refuses them, with its messages
 * and in its order of checks, so a client sees the same answer here as there. What the flags mean
 * is decided once, in the store (storage/meta.ts).
 */

import { strtol32, strtoul32, strtoull } from "./numbers.js";
import type { MetaRequest } from "./request.js";

/** memcached: tokens of a meta line (command, key, flags and its terminal token) past this are refused. */
const MAX_TOKENS = 20;
/** memcached's longest opaque token (`O` and its value). */
const MAX_OPAQUE = 32;
const KEY_MAX = 250;
const INT32_MAX = 2147483647;
const BAD_FORMAT = "CLIENT_ERROR bad command line format";

export type MetaCommand = MetaRequest["op"];

/** A meta line's meaning, or the line that refuses it (`swallow`: bytes of a data block to skip). */
type MetaParse = { req: MetaRequest; bytes: number } | { error: string; swallow: number };

/**
 * Reads `tokens` (the line split on spaces). `validKey` is the node's own key rule; a base64 key
 * must decode to a key it accepts (no spaces or control bytes: keys travel in replication lines).
 */
export function parseMeta(
  op: MetaCommand,
  tokens: string[],
  validKey: (key: string) => boolean,
): MetaParse | "ERROR" {
  // memcached counts a terminal token after the last one.
  const ntokens = tokens.length + 1;
  if (ntokens < 3) return "ERROR";
  const wireKey = tokens[1] as string;
  if (op === "me") return debugRequest(tokens, wireKey, validKey);
  if (wireKey.length > KEY_MAX) return { error: BAD_FORMAT, swallow: 0 };
  let first = 2;
  let bytes = 0;
  if (op === "ms") {
    if (ntokens === 3) return { error: BAD_FORMAT, swallow: 0 };
    if (ntokens > MAX_TOKENS) return { error: "CLIENT_ERROR options flags too long", swallow: 0 };
    const n = strtol32(tokens[2]);
    if (n === null || n < 0 || n > INT32_MAX - 2) return { error: BAD_FORMAT, swallow: 0 };
    bytes = n;
    first = 3;
  } else if (ntokens > MAX_TOKENS) {
    return {
      error: op === "mg" ? "CLIENT_ERROR options flags are too long" : "CLIENT_ERROR options flags too long",
      swallow: 0,
    };
  }
  const read = readFlags(tokens, first, wireKey);
  const swallow = op === "ms" ? bytes + 2 : 0;
  if (typeof read === "string")
    // md and ma answer one message for every flag they refuse.
    return {
      error: op === "md" || op === "ma" ? "CLIENT_ERROR invalid or duplicate flag" : read,
      swallow,
    };
  const { flags, key } = read;
  if (!validKey(key)) return { error: BAD_FORMAT, swallow };
  for (const t of flags.tokens) {
    if (t.charCodeAt(0) === 79 /* O */ && t.length > MAX_OPAQUE)
      return { error: "CLIENT_ERROR opaque token too long", swallow };
  }
  if (op === "ms" && flags.mode !== undefined && !"EAPRS".includes(flags.mode))
    return { error: "CLIENT_ERROR invalid mode for ms M token", swallow };
  if (op === "ma" && flags.mode !== undefined && !"I+D-".includes(flags.mode))
    return { error: "CLIENT_ERROR invalid mode for ma M token", swallow };
  return { req: { op, key, wireKey, flags, value: NO_VALUE }, bytes };
}

const NO_VALUE = Buffer.alloc(0);

export interface MetaFlags {
  /** The flag tokens as sent, in order: the reply echoes the asked-for ones in this order. */
  tokens: string[];
  binary: boolean;
  /** q: the nominal reply (HD, or EN for mg) is not sent. Errors always are. */
  quiet: boolean;
  /** v */
  value: boolean;
  /** u: no LRU bump, and the item is not marked fetched. */
  noBump: boolean;
  /** I */
  invalidate: boolean;
  /** T, N, R: protocol exptimes (seconds, or Unix time past 30 days). */
  ttl: number | undefined;
  vivify: number | undefined;
  recache: number | undefined;
  /** F */
  clientFlags: number;
  /** C: compare cas. */
  compare: bigint | undefined;
  /** E: the cas (version) to give the item. */
  explicit: bigint | undefined;
  /** M */
  mode: string | undefined;
  /** D and J (ma). */
  delta: bigint;
  initial: bigint;
}

/** Which flags a line named: `seen[c] === readings` for the line being read (no clearing between lines). */
const seen = new Uint32Array(127);
let readings = 0;

/**
 * memcached's `_meta_flag_preparse`: a repeated or unknown flag stops at once; a bad number is
 * noted and the flags after it still read (a later message wins).
 */
function readFlags(
  tokens: string[],
  first: number,
  wireKey: string,
): { flags: MetaFlags; key: string } | string {
  const f: MetaFlags = {
    tokens: tokens.slice(first),
    binary: false,
    quiet: false,
    value: false,
    noBump: false,
    invalidate: false,
    ttl: undefined,
    vivify: undefined,
    recache: undefined,
    clientFlags: 0,
    compare: undefined,
    explicit: undefined,
    mode: undefined,
    delta: 1n,
    initial: 0n,
  };
  let error: string | undefined;
  let key = wireKey;
  const stamp = ++readings;
  for (const t of f.tokens) {
    const o = t.charCodeAt(0);
    if (o >= 127 || seen[o] === stamp) return "CLIENT_ERROR duplicate flag";
    seen[o] = stamp;
    switch (t[0]) {
      case "b": {
        f.binary = true;
        const decoded = decodeBase64(wireKey);
        if (decoded === null) error = "CLIENT_ERROR error decoding key";
        else key = decoded;
        break;
      }
      case "N":
      case "T":
      case "R": {
        const n = strtol32(t.slice(1));
        if (n === null) error = "CLIENT_ERROR bad token in command line format";
        else if (o === 78) f.vivify = n;
        else if (o === 84) f.ttl = n;
        else f.recache = n;
        break;
      }
      case "v":
        f.value = true;
        break;
      case "u":
        f.noBump = true;
        break;
      case "q":
        f.quiet = true;
        break;
      case "I":
        f.invalidate = true;
        break;
      case "O":
      case "P":
      case "L":
      case "k":
      case "s":
      case "t":
      case "c":
      case "f":
      case "h":
      case "l":
        break;
      case "F": {
        const n = strtoul32(t.slice(1));
        // memcached notes the error but keeps its default message.
        if (n === null) error ??= BAD_FORMAT;
        else f.clientFlags = n;
        break;
      }
      case "C":
      case "E": {
        const n = strtoull(t.slice(1));
        if (n === null) error = "CLIENT_ERROR bad token in command line format";
        else if (o === 67) f.compare = n;
        else f.explicit = n;
        break;
      }
      case "M":
        if (t.length !== 2) error = "CLIENT_ERROR incorrect length for M token";
        else f.mode = t[1];
        break;
      case "J": {
        const n = strtoull(t.slice(1));
        if (n === null) error = "CLIENT_ERROR invalid numeric initial value";
        else f.initial = n;
        break;
      }
      case "D": {
        const n = strtoull(t.slice(1));
        if (n === null) error = "CLIENT_ERROR invalid numeric delta value";
        else f.delta = n;
        break;
      }
      default:
        return "CLIENT_ERROR invalid flag";
    }
  }
  return error ?? { flags: f, key };
}

/** `me <key> [b]`: the flags of other meta commands are not read here. */
function debugRequest(tokens: string[], wireKey: string, validKey: (key: string) => boolean): MetaParse {
  if (wireKey.length > KEY_MAX) return { error: BAD_FORMAT, swallow: 0 };
  const { flags } = readFlags([], 0, wireKey) as { flags: MetaFlags };
  let key = wireKey;
  if (tokens.length >= 3 && tokens[2] === "b") {
    const decoded = decodeBase64(wireKey);
    if (decoded === null) return { error: BAD_FORMAT, swallow: 0 };
    key = decoded;
    flags.binary = true;
  }
  if (!validKey(key)) return { error: BAD_FORMAT, swallow: 0 };
  return { req: { op: "me", key, wireKey, flags, value: NO_VALUE }, bytes: 0 };
}

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
/** memcached's decode table: characters outside the alphabet are skipped, `=` counts as a zero. */
const DECODE = new Uint8Array(256).fill(0x80);
for (let i = 0; i < 64; i++) DECODE[ALPHABET.charCodeAt(i)] = i;
DECODE[61] = 0;

/**
 * memcached's base64_decode, byte for byte: what it decodes to (latin1), or null where it fails (no
 * symbols, a count not a multiple of four, three pads).
 */
function decodeBase64(s: string): string | null {
  let count = 0;
  for (let i = 0; i < s.length; i++) if (DECODE[s.charCodeAt(i) & 0xff] !== 0x80) count++;
  if (count === 0 || count % 4 !== 0) return null;
  const out: number[] = [];
  const block = [0, 0, 0, 0];
  let n = 0;
  let pad = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i) & 0xff;
    const v = DECODE[c] as number;
    if (v === 0x80) continue;
    if (c === 61) pad++;
    block[n++] = v;
    if (n < 4) continue;
    out.push(
      (((block[0] as number) << 2) & 0xff) | ((block[1] as number) >> 4),
      (((block[1] as number) << 4) & 0xff) | ((block[2] as number) >> 2),
      (((block[2] as number) << 6) & 0xff) | (block[3] as number),
    );
    n = 0;
    if (pad > 0) {
      if (pad > 2) return null;
      out.length -= pad;
      break;
    }
  }
  return out.length === 0 ? null : String.fromCharCode(...out);
}

/** A key as a reply returns it: base64 (then flagged ` b`) when the request named it so. */
export function replyKey(key: string, binary: boolean): string {
  return binary ? `${Buffer.from(key, "latin1").toString("base64")} b` : key;
}
