/**
 * Streaming parser of the memcached text protocol. Bytes arrive in arbitrary pieces; complete
 * requests leave through `onRequest` in order, synchronously, so a caller can answer a whole packet
 * of pipelined requests with one write. Memory stays bounded: a line longer than `maxLine` is fatal,
 * and a value larger than `maxValue` is skipped (counted, never buffered).
 */
import { type AuthSession, answerCluster, type ClusterSecret } from "../cluster-auth.js";
import { byteIn, newlineAt } from "./bytes.js";
import { type MetaCommand, parseMeta } from "./meta.js";
import { strtol32, strtoul32, strtoull } from "./numbers.js";
import type { MetaRequest, Request, StoreOp, SyncOption } from "./request.js";

export interface ParserLimits {
  /** Longest request line, in bytes, before the connection is given up. */
  maxLine: number;
  /** Largest value accepted; a larger one is answered `SERVER_ERROR object too large for cache`. */
  maxValue: number;
  /** Longest key, in bytes (memcached: 250). */
  maxKey: number;
}

export const BAD_FORMAT = "CLIENT_ERROR bad command line format";
export const BAD_CHUNK = "CLIENT_ERROR bad data chunk";
export const TOO_LARGE = "SERVER_ERROR object too large for cache";
export const BAD_EXPTIME = "CLIENT_ERROR invalid exptime argument";
export const LINE_TOO_LONG = "CLIENT_ERROR line too long";

/** memcached's 30-day cut between relative and absolute expiry (also its signed 32-bit field). */
const INT32_MAX = 2147483647;
const UINT32_MAX = 4294967295;
const UINT64_MAX = (1n << 64n) - 1n;
/** A length field past this is nonsense, not a big value: we refuse instead of swallowing it. */
const MAX_DECLARED_BYTES = INT32_MAX - 2;

type PendingStore = Extract<Request, { op: StoreOp }> | MetaRequest;

export class RequestParser {
  /** Unconsumed bytes of an incomplete line. */
  private rest: Buffer | null = null;
  /** A storage request waiting for its data block. */
  private pending: PendingStore | null = null;
  private pendingBytes = 0;
  /** The pending set came from the hot path: plain, so its bytes can be forwarded as they are. */
  private pendingHot = false;
  private parts: Buffer[] = [];
  private partsLength = 0;
  /** Bytes of a refused data block still to skip, and the requests owed once they are skipped. */
  private skip = 0;
  private skipThen: Request[] = [];
  /** The body of a `node sync` being read, line by line until END. */
  private sync: { version: number; lines: string[] } | null = null;
  /** Set by the consumer (after `quit`, or on a fatal error) to stop parsing for good. */
  halted = false;
  /** The connection's first byte was seen. */
  private started = false;
  /**
   * Set when a request kept a view of the bytes pushed (a value, or the raw bytes a proxy
   * forwards): the reader must not reuse that memory for its next read. Cleared by the reader.
   */
  retained = false;

  /** This connection's cluster authentication: cluster traffic parses only once it proved itself. */
  readonly session: AuthSession = {};

  constructor(
    private readonly limits: ParserLimits,
    private readonly onRequest: (req: Request) => void,
    /**
     * The input cannot be followed any more; the reply line (none when "") goes out after the
     * replies owed before it, then the connection closes.
     */
    private readonly onFatal: (line: string) => void,
    /** The cluster's secret; without one (a parser on its own) no connection is a peer. */
    private readonly secret?: ClusterSecret,
    /** Where refused oversized values are counted (`stats` store_too_large). */
    private readonly counts: { storeTooLarge: number } = { storeTooLarge: 0 },
    /** Keep each plain set's bytes as they arrived (`raw`): a proxy forwards them as they are. */
    private readonly keepRaw = false,
  ) {}

  /** Whether the connection proved it is a cluster peer (else it is a plain memcached client). */
  get trusted(): boolean {
    return this.session.peer !== undefined;
  }

  /** Bytes buffered for an incomplete request (what a slow client is holding). */
  get buffered(): number {
    return (this.rest?.length ?? 0) + this.partsLength;
  }

  /**
   * Parses bytes 0 to `length` of `chunk`: a reader that reads into memory of its own passes that
   * memory as it is, and makes no view per read.
   */
  push(chunk: Buffer, length = chunk.length): void {
    let data = chunk;
    let end = length;
    let pos = 0;
    if (this.skip > 0) {
      const n = Math.min(this.skip, end);
      this.skip -= n;
      pos = n;
      if (this.skip > 0) return;
      this.emitAll(this.skipThen);
    } else if (this.pending !== null) {
      pos = this.fillValue(data, 0, end);
      if (this.pending !== null) return;
    } else if (this.rest !== null) {
      data = Buffer.concat([this.rest, data.subarray(0, end)]);
      end = data.length;
      this.rest = null;
    }
    this.parseLines(data, pos, end);
  }

  /**
   * The longest line allowed from `pos`: retrievals name many keys (clients batch thousands, as
   * memcached takes them), so their lines may be GET_LINE_FACTOR times longer than the rest.
   */
  private maxLineAt(data: Buffer, pos: number): number {
    // "get", "gets", "gat", "gats"
    const retrieval =
      data[pos] === 103 && (data[pos + 1] === 101 || data[pos + 1] === 97) && data[pos + 2] === 116;
    return retrieval ? this.limits.maxLine * GET_LINE_FACTOR : this.limits.maxLine;
  }

  private emit(req: Request): void {
    if (!this.halted && req !== NOTHING) this.onRequest(req);
  }

  private parseLines(data: Buffer, start: number, end: number): void {
    let pos = start;
    while (pos < end && !this.halted) {
      // memcached speaks binary when a connection's first byte says so; we do not: hang up at
      // once, so a binary client fails fast instead of waiting for a reply that never comes.
      if (!this.started) {
        this.started = true;
        if (data[pos] === 0x80) {
          this.halted = true;
          this.onFatal("");
          return;
        }
      }
      const nl = newlineAt(data, pos, end);
      const maxLine = this.maxLineAt(data, pos);
      if (nl < 0 || nl - pos > maxLine) {
        if (end - pos > maxLine) {
          this.halted = true;
          this.onFatal(LINE_TOO_LONG);
          return;
        }
        // Copy: a view would pin the whole socket chunk while the client dawdles.
        this.rest = Buffer.from(data.subarray(pos, end));
        return;
      }
      const lineEnd = nl > pos && data[nl - 1] === 13 ? nl - 1 : nl;
      let lineStart = pos;
      pos = nl + 1;
      if (this.sync !== null) {
        this.syncLine(data.latin1Slice(lineStart, lineEnd));
        continue;
      }
      // Flare's proxy prefix `<host:port@seq>command`: a write replicated by a peer. From a client
      // it is no command at all (memcached answers ERROR).
      let from: string | undefined;
      let seq = -1;
      if (data[lineStart] === 60 && this.trusted) {
        const gt = byteIn(data, 62, lineStart, lineEnd);
        if (gt > lineStart) {
          const at = byteIn(data, 64, lineStart, gt);
          const hasSeq = at > lineStart;
          if (hasSeq) seq = digitsAt(data, at + 1, gt, 15);
          from = data.latin1Slice(lineStart + 1, hasSeq ? at : gt);
          lineStart = gt + 1;
        }
      }
      const proxied = from !== undefined;
      let req = this.parseHot(data, lineStart, lineEnd);
      if (req === undefined) req = this.parseLine(data.latin1Slice(lineStart, lineEnd));
      if (proxied) markProxied(req ?? this.pending, from as string, seq);
      if (req !== null) {
        this.emit(req);
        continue;
      }
      if (this.sync !== null) continue;
      if (this.skip > 0) {
        const n = Math.min(this.skip, end - pos);
        this.skip -= n;
        pos += n;
        if (this.skip > 0) return;
        this.emitAll(this.skipThen);
        continue;
      }
      // A storage header was read: its data block follows.
      const pending = this.pending as PendingStore;
      const need = this.pendingBytes;
      if (end - pos >= need + 2) {
        this.pending = null;
        if (this.keepRaw && this.pendingHot && !proxied && pending.op === "set")
          pending.raw = data.subarray(lineStart, pos + need + 2);
        this.finishValue(pending, data.subarray(pos, pos + need), data[pos + need], data[pos + need + 1]);
        pos += need + 2;
      } else {
        pos += this.fillValue(data, pos, end);
        return;
      }
    }
  }

  /** Adds bytes `from` to `end` of `data` to the pending data block; returns how many it used. */
  private fillValue(data: Buffer, from: number, end: number): number {
    const req = this.pending as PendingStore;
    const need = this.pendingBytes + 2 - this.partsLength;
    const used = Math.min(need, end - from);
    this.parts.push(data.subarray(from, from + used));
    this.partsLength += used;
    this.retained = true;
    if (used === need) {
      const block =
        this.parts.length === 1 ? (this.parts[0] as Buffer) : Buffer.concat(this.parts, this.partsLength);
      this.parts = [];
      this.partsLength = 0;
      this.pending = null;
      const n = this.pendingBytes;
      this.finishValue(req, block.subarray(0, n), block[n], block[n + 1]);
    }
    return used;
  }

  private finishValue(
    req: PendingStore,
    value: Buffer,
    cr: number | undefined,
    lf: number | undefined,
  ): void {
    if (cr !== 13 || lf !== 10) {
      // A meta set's errors are answered in quiet mode too.
      this.emit("noreply" in req && req.noreply ? NOTHING : { op: "reply", line: BAD_CHUNK });
      return;
    }
    req.value = value;
    this.retained = true;
    this.emit(req);
  }

  private syncLine(line: string): void {
    const sync = this.sync as { version: number; lines: string[] };
    if (line === "END") {
      this.sync = null;
      this.emit({ op: "node_sync", version: sync.version, lines: sync.lines });
    } else if (sync.lines.length >= MAX_SYNC_NODES) {
      this.sync = null;
      this.halted = true;
      this.onFatal("CLIENT_ERROR format error");
    } else {
      sync.lines.push(line);
    }
  }

  /**
   * The hot path: `get`/`gets` with single-spaced keys and plain `set` headers, read straight from
   * the bytes (no line string, no split). Returns undefined for anything else, which then takes the
   * general path; both paths give the same result for the lines this one accepts.
   */
  private parseHot(data: Buffer, start: number, end: number): Request | null | undefined {
    if (end - start < 5 || data[end - 1] === 32) return undefined;
    const c0 = data[start];
    if (c0 === 103 /* g */ && data[start + 1] === 101 && data[start + 2] === 116) {
      let at = start + 3;
      const gets = data[at] === 115;
      if (gets) at++;
      if (data[at] !== 32) return undefined;
      // Most gets name one key: an array literal of one, not the room for 17 a first push makes.
      let keys: string[] | undefined;
      at++;
      while (at < end) {
        let sp = byteIn(data, 32, at, end);
        if (sp < 0) sp = end;
        if (sp === at) return undefined;
        const key = data.latin1Slice(at, sp);
        if (!this.validKey(key)) return undefined;
        if (keys === undefined) keys = [key];
        else keys.push(key);
        at = sp + 1;
      }
      if (keys === undefined) return undefined;
      return { op: gets ? "gets" : "get", keys };
    }
    if (c0 === 115 /* s */ && data[start + 1] === 101 && data[start + 2] === 116 && data[start + 3] === 32) {
      // set <key> <flags> <exptime> <bytes>, nothing more
      const k = start + 4;
      const k2 = byteIn(data, 32, k, end);
      if (k2 < 0 || k2 === k) return undefined;
      const f2 = byteIn(data, 32, k2 + 1, end);
      if (f2 < 0) return undefined;
      const e2 = byteIn(data, 32, f2 + 1, end);
      if (e2 < 0 || byteIn(data, 32, e2 + 1, end) >= 0) return undefined;
      const flags = digitsAt(data, k2 + 1, f2, 10);
      const exptime = digitsAt(data, f2 + 1, e2, 9);
      const bytes = digitsAt(data, e2 + 1, end, 9);
      if (flags < 0 || flags > UINT32_MAX || exptime < 0 || bytes < 0) return undefined;
      const key = data.latin1Slice(k, k2);
      if (!this.validKey(key)) return undefined;
      if (bytes > this.limits.maxValue) return this.tooLarge("set", key, false, bytes);
      this.pending = {
        op: "set",
        key,
        flags,
        exptime,
        value: NO_VALUE,
        version: 0n,
        noreply: false,
        sync: undefined,
      };
      this.pendingBytes = bytes;
      this.pendingHot = true;
      return null;
    }
    return undefined;
  }

  /**
   * Returns the request of a line, or null when the line opened a data block: then either `pending`
   * waits for the block, or `skip` counts a refused block down.
   */
  private parseLine(line: string): Request | null {
    let tokens = line.split(" ");
    if (line.includes("  ") || line.startsWith(" ") || line.endsWith(" "))
      tokens = tokens.filter((t) => t !== "");
    // An HTTP request (a browser tricked into posting to a cache port): memcached hangs up.
    if (tokens.length > 1 && (tokens[tokens.length - 1] as string).startsWith("HTTP/")) {
      this.halted = true;
      this.onFatal("");
      return { op: "reply", line: "" };
    }
    const cmd = tokens[0];
    switch (cmd) {
      case "mg":
      case "ms":
      case "md":
      case "ma":
      case "me":
        return this.meta(cmd, tokens);
      // memcached answers mn with no look at what follows it.
      case "mn":
        return { op: "reply", line: "MN" };
      case "get":
      case "gets":
        return this.retrieval(cmd, tokens, 1, 0);
      case "gat":
      case "gats": {
        const exptime = strtol32(tokens[1]);
        if (exptime === null) return { op: "reply", line: tokens.length < 2 ? "ERROR" : BAD_EXPTIME };
        if (tokens.length === 2) return { op: "reply", line: "END" };
        return this.retrieval(cmd, tokens, 2, exptime);
      }
      case "set":
      case "add":
      case "replace":
      case "append":
      case "prepend":
      case "cas":
        return this.storage(cmd, tokens);
      case "incr":
      case "decr":
        return this.arithmetic(cmd, tokens);
      case "delete":
        return this.delete(tokens);
      case "touch": {
        // memcached: one more word is `noreply` or ignored; a last word noreply silences a refusal.
        const noreply = tokens[tokens.length - 1] === "noreply";
        if (tokens.length !== 3 && tokens.length !== 4) return { op: "reply", line: "ERROR" };
        const key = tokens[1] as string;
        const exptime = strtol32(tokens[2]);
        if (!this.validKey(key)) return refuse(BAD_FORMAT, noreply);
        if (exptime === null) return refuse(BAD_EXPTIME, noreply);
        return { op: "touch", key, exptime, noreply };
      }
      case "flush_all": {
        // memcached: `flush_all [delay] [noreply]`; a word after the delay that is not noreply is ignored.
        if (tokens.length > 3) return { op: "reply", line: "ERROR" };
        const noreply = tokens[tokens.length - 1] === "noreply";
        const delay = tokens.length === (noreply ? 2 : 1) ? 0 : strtol32(tokens[1]);
        if (delay === null) return refuse(BAD_EXPTIME, noreply);
        return { op: "flush_all", delay, noreply };
      }
      case "stats":
        return { op: "stats", args: tokens.slice(1) };
      case "cluster": {
        const answer =
          this.secret === undefined ? undefined : answerCluster(this.secret, this.session, tokens);
        if (answer === undefined) return { op: "reply", line: "ERROR" };
        if (answer.fatal) {
          this.halted = true;
          this.onFatal(answer.line);
        }
        return { op: "reply", line: answer.line };
      }
      case "dump":
      case "dump_key": {
        // dump sends values, so only peers may (reconstruction); dump_key lists keys as
        // memcached's lru_crawler metadump does for anyone, and flare-tools reads it.
        const keysOnly = cmd === "dump_key";
        if (!keysOnly && !this.trusted) return { op: "reply", line: "ERROR" };
        const n = tokens.slice(1).map((t) => parseInt32(t));
        if (n.length > (keysOnly ? 3 : 4) || n.some((x) => x === null)) return { op: "reply", line: "ERROR" };
        const [wait = 0, partition = -1, size = 0, bwlimit = 0] = keysOnly
          ? [0, ...(n as number[])]
          : (n as number[]);
        if (
          wait < 0 ||
          bwlimit < 0 ||
          (partition >= 0 && partition + 1 > size) ||
          (size > 0 && partition < 0)
        ) {
          return { op: "reply", line: "ERROR" };
        }
        return keysOnly
          ? { op: "dump", wait, partition, size, bwlimit, keysOnly }
          : { op: "dump", wait, partition, size, bwlimit };
      }
      case "node": {
        if (!this.trusted || tokens[1] !== "sync" || tokens.length > 3) return { op: "reply", line: "ERROR" };
        const version = tokens.length === 3 ? parseUint(tokens[2], Number.MAX_SAFE_INTEGER) : 0;
        if (version === null) return { op: "reply", line: "CLIENT_ERROR format error" };
        this.sync = { version, lines: [] };
        return null;
      }
      // memcached ignores arguments of version and verbosity; memcapable checks that it does.
      case "version":
        return { op: cmd };
      case "quit":
        return tokens.length === 1 ? { op: cmd } : { op: "reply", line: "ERROR" };
      case "ping": {
        const peer = this.session.peer;
        if (tokens.length === 1) return peer === undefined ? { op: "ping" } : { op: "ping", from: peer };
        const stamp = tokens[1] as string;
        const sentAt =
          tokens.length === 2 && peer === "index" && /^\d{1,16}$/.test(stamp) ? Number(stamp) : null;
        return sentAt === null ? { op: "reply", line: "ERROR" } : { op: "ping", from: peer, sentAt };
      }
      case "verbosity": {
        if (tokens.length < 2 || tokens.length > 3) return { op: "reply", line: "ERROR" };
        const noreply = tokens[tokens.length - 1] === "noreply";
        if (strtoull(tokens[1]) === null) return refuse(BAD_FORMAT, noreply);
        return { op: "verbosity", noreply };
      }
      default:
        return { op: "reply", line: "ERROR" };
    }
  }

  private retrieval(
    op: "get" | "gets" | "gat" | "gats",
    tokens: string[],
    first: number,
    exptime: number,
  ): Request {
    if (tokens.length <= first) return { op: "reply", line: "ERROR" };
    const keys = first === 1 ? tokens.slice(1) : tokens.slice(first);
    for (const key of keys) if (!this.validKey(key)) return refuse(BAD_FORMAT, false);
    return op === "get" || op === "gets" ? { op, keys } : { op, exptime, keys };
  }

  /**
   * `<cmd> <key> <flags> <exptime> <bytes> [<cas|version>] [noreply|sync|async]`. A refusal is
   * silent when the line ends in noreply, as memcached's is.
   */
  private storage(op: StoreOp, words: string[]): Request | null {
    let tokens = words;
    if (tokens.length < (op === "cas" ? 6 : 5)) return { op: "reply", line: "ERROR" };
    const quiet = tokens[tokens.length - 1] === "noreply";
    const bytes = strtol32(tokens[4]);
    if (bytes === null || bytes < 0 || bytes > MAX_DECLARED_BYTES) return refuse(BAD_FORMAT, quiet);
    const key = tokens[1] as string;
    const flags = strtoul32(tokens[2]);
    const exptime = strtol32(tokens[3]);
    let version = 0n;
    let i = 5;
    if (!this.trusted) {
      // memcached: one word past the cas unique (or past the length) is `noreply` or ignored, a
      // client's number is never a version; two or more make the line an ERROR and the data
      // block is read as commands.
      const words = op === "cas" ? 6 : 5;
      if (tokens.length > words + 1) return { op: "reply", line: "ERROR" };
      if (tokens.length === words + 1 && !isOption(tokens[words] as string)) tokens = tokens.slice(0, words);
    }
    if (op === "cas" || (tokens[5] !== undefined && isDigits(tokens[5]))) {
      const v = op === "cas" ? strtoull(tokens[5]) : parseUint64(tokens[5]);
      if (v === null) return this.refuseBlock(bytes, quiet);
      version = v;
      i = 6;
    }
    const opts = parseOptions(tokens, i);
    if (!this.validKey(key) || flags === null || exptime === null || opts === null) {
      return this.refuseBlock(bytes, quiet);
    }
    if (bytes > this.limits.maxValue) return this.tooLarge(op, key, opts.noreply, bytes);
    this.pending = {
      op,
      key,
      flags,
      exptime,
      value: NO_VALUE,
      version,
      noreply: opts.noreply,
      sync: opts.sync,
    };
    this.pendingBytes = bytes;
    this.pendingHot = false;
    return null;
  }

  /** A meta command; `ms` opens a data block (refused ones are skipped, as memcached swallows them). */
  private meta(op: MetaCommand, tokens: string[]): Request | null {
    const r = parseMeta(op, tokens, (key) => this.validKey(key));
    if (r === "ERROR") return { op: "reply", line: "ERROR" };
    if ("error" in r) {
      if (r.swallow === 0) return { op: "reply", line: r.error };
      this.skip = r.swallow;
      this.skipThen = [{ op: "reply", line: r.error }];
      return null;
    }
    if (op !== "ms") return r.req;
    if (r.bytes > this.limits.maxValue) {
      // memcached unlinks what the key held in every mode of ms.
      this.counts.storeTooLarge++;
      this.skip = r.bytes + 2;
      this.skipThen = [
        { op: "delete", key: r.req.key, hold: 0, version: 0n, noreply: true, sync: undefined },
        { op: "reply", line: TOO_LARGE },
      ];
      return null;
    }
    this.pending = r.req;
    this.pendingBytes = r.bytes;
    this.pendingHot = false;
    return null;
  }

  /** Skips a data block we will not store, so the next request is read from the right place; its refusal is silent under noreply. */
  private refuseBlock(bytes: number, quiet: boolean): null {
    this.skip = bytes + 2;
    this.skipThen = [refuse(BAD_FORMAT, quiet)];
    return null;
  }

  /**
   * A value larger than the cache takes. As memcached: a `set` also unlinks what the key held, so
   * no stale value is served after a failed write (through the write path: fenced, replicated),
   * and with noreply nothing is answered.
   */
  private tooLarge(op: StoreOp, key: string, noreply: boolean, bytes: number): null {
    this.counts.storeTooLarge++;
    this.skip = bytes + 2;
    this.skipThen = [];
    if (op === "set")
      this.skipThen.push({ op: "delete", key, hold: 0, version: 0n, noreply: true, sync: undefined });
    if (!noreply) this.skipThen.push({ op: "reply", line: TOO_LARGE });
    return null;
  }

  private emitAll(requests: Request[]): void {
    for (const r of requests) this.emit(r);
  }

  /** `incr|decr <key> <delta> [noreply|sync|async]`; memcached ignores a 4th word it does not know. */
  private arithmetic(op: "incr" | "decr", tokens: string[]): Request {
    if (tokens.length < 3) return { op: "reply", line: "ERROR" };
    const quiet = tokens[tokens.length - 1] === "noreply";
    const key = tokens[1] as string;
    const opts =
      parseOptions(tokens, 3) ?? (tokens.length === 4 ? { noreply: false, sync: undefined } : null);
    if (opts === null) return { op: "reply", line: "ERROR" };
    if (!this.validKey(key)) return refuse(BAD_FORMAT, quiet);
    const delta = strtoull(tokens[2]);
    if (delta === null) return refuse("CLIENT_ERROR invalid numeric delta argument", quiet);
    return { op, key, delta, noreply: opts.noreply, sync: opts.sync };
  }

  /** `delete <key> [<hold-seconds>] [<version>] [noreply|sync|async]` (hold and version: Flare). */
  private delete(tokens: string[]): Request {
    if (tokens.length < 2 || (tokens.length > 4 && !this.trusted)) return { op: "reply", line: "ERROR" };
    const quiet = tokens.length > 2 && tokens[tokens.length - 1] === "noreply";
    const key = tokens[1] as string;
    let i = 2;
    let hold = 0;
    let version = 0n;
    if (tokens[i] !== undefined && isDigits(tokens[i] as string)) {
      hold = parseUint(tokens[i], INT32_MAX) ?? -1;
      i++;
      // Only a peer sends a version (a replicated delete); memcached refuses a third number.
      if (tokens[i] !== undefined && isDigits(tokens[i] as string) && this.trusted) {
        const v = parseUint64(tokens[i]);
        if (v === null) return refuse(BAD_FORMAT, quiet);
        version = v;
        i++;
      }
    }
    const opts = parseOptions(tokens, i);
    if (hold < 0 || opts === null) {
      return refuse("CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]", quiet);
    }
    if (!this.validKey(key)) return refuse(BAD_FORMAT, quiet);
    return { op: "delete", key, hold, version, noreply: opts.noreply, sync: opts.sync };
  }

  private validKey(key: string): boolean {
    const n = key.length;
    if (n === 0 || n > this.limits.maxKey) return false;
    for (let i = 0; i < n; i++) {
      const c = key.charCodeAt(i);
      if (c <= 32 || c === 127) return false;
    }
    return true;
  }
}

const NO_VALUE = Buffer.alloc(0);
/** A refusal of a noreply request: nothing is emitted. */
const NOTHING: Request = { op: "reply", line: "" };
/** How much longer than max-line-length a get/gets/gat line may be (64 KB → 2 MB by default). */
const GET_LINE_FACTOR = 32;
/** A node map larger than this is not a node map. */
const MAX_SYNC_NODES = 100_000;

/** What a refused request gets: `line`, or nothing when the client asked for no reply. */
function refuse(line: string, quiet: boolean): Request {
  return quiet ? NOTHING : { op: "reply", line };
}

function markProxied(req: Request | null, from: string, seq: number): void {
  if (req === null || !("noreply" in req) || req.op === "flush_all" || req.op === "verbosity") return;
  req.proxied = from;
  if (seq >= 0) req.seq = seq;
}

/** A short run of ASCII digits as a number; -1 when empty, too long or not digits. */
function digitsAt(data: Buffer, start: number, end: number, maxDigits: number): number {
  const n = end - start;
  if (n <= 0 || n > maxDigits) return -1;
  let v = 0;
  for (let i = start; i < end; i++) {
    const c = (data[i] as number) - 48;
    if (c < 0 || c > 9) return -1;
    v = v * 10 + c;
  }
  return v;
}

function isDigits(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

function parseUint(s: string | undefined, max: number): number | null {
  if (s === undefined || s.length === 0 || s.length > 10 || !isDigits(s)) return null;
  const n = Number(s);
  return n <= max ? n : null;
}

function parseInt32(s: string | undefined): number | null {
  if (s === undefined) return null;
  const neg = s.startsWith("-");
  const n = parseUint(neg ? s.slice(1) : s, INT32_MAX + (neg ? 1 : 0));
  return n === null ? null : neg ? -n : n;
}

function parseUint64(s: string | undefined): bigint | null {
  if (s === undefined || s.length === 0 || s.length > 20 || !isDigits(s)) return null;
  const n = BigInt(s);
  return n <= UINT64_MAX ? n : null;
}

/** `noreply`, or Flare's per-request `sync` / `async`. */
function isOption(word: string): boolean {
  return word === "noreply" || word === "sync" || word === "async";
}

function parseOptions(tokens: string[], from: number): { noreply: boolean; sync: SyncOption } | null {
  let noreply = false;
  let sync: SyncOption;
  for (let i = from; i < tokens.length; i++) {
    const t = tokens[i] as string;
    if (!isOption(t)) return null;
    if (t === "noreply") noreply = true;
    else sync = t as SyncOption;
  }
  return { noreply, sync };
}
