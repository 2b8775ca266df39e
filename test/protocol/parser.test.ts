import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AUTH_FAILED, ClusterSecret } from "../../protocol/cluster-auth.js";
import { BAD_FORMAT, LINE_TOO_LONG, RequestParser, TOO_LARGE } from "../../protocol/memcache/parser.js";
import type { Request } from "../../protocol/memcache/request.js";

const limits = { maxLine: 2048, maxValue: 1024, maxKey: 250 };

/** Bytes a reader's memory may hold past what it read: none of them may be parsed. */
const STALE = Buffer.from("\r\nget stale\r\nset x 0 0 1\r\n!\r\n\n", "latin1");

/**
 * `peer`: the connection has proved itself a cluster peer (cluster traffic parses). `stale`: each
 * piece is pushed as a server's reader pushes a read, the first bytes of memory whose rest holds
 * older bytes.
 */
function parseAll(
  pieces: Buffer[],
  lim = limits,
  peer = false,
  stale = false,
): { requests: Request[]; fatal: string[] } {
  const requests: Request[] = [];
  const fatal: string[] = [];
  const parser = new RequestParser(
    lim,
    (r) => {
      // `raw` (bytes to forward as they came) depends on how the input was split; it has its own test.
      const { raw: _, ...req } = r as Request & { raw?: Buffer };
      // Values may be views of the input: copy so later pieces cannot change what we compare.
      if ("value" in req) requests.push({ ...req, value: Buffer.from(req.value) } as Request);
      else requests.push(req as Request);
    },
    (line) => fatal.push(line),
    new ClusterSecret("s3cret"),
  );
  if (peer) parser.session.peer = "node";
  for (const p of pieces) {
    if (stale) parser.push(Buffer.concat([p, STALE]), p.length);
    else parser.push(p);
  }
  return { requests, fatal };
}

const key = fc.stringMatching(/^[!-~]{1,40}$/);
const value = fc.uint8Array({ maxLength: 300 });

/** A valid request on the wire, and the op it must parse to. */
const wireRequest = fc.oneof(
  fc
    .tuple(fc.constantFrom("get", "gets"), fc.array(key, { minLength: 1, maxLength: 5 }))
    .map(([op, keys]) => ({
      wire: Buffer.from(`${op} ${keys.join(" ")}\r\n`, "latin1"),
      expect: { op, keys },
    })),
  fc
    .tuple(
      fc.constantFrom("set", "add", "replace", "append", "prepend"),
      key,
      fc.integer({ min: 0, max: 4294967295 }),
      fc.integer({ min: -1, max: 100000 }),
      value,
      fc.boolean(),
    )
    .map(([op, k, flags, exptime, v, noreply]) => ({
      wire: Buffer.concat([
        Buffer.from(`${op} ${k} ${flags} ${exptime} ${v.length}${noreply ? " noreply" : ""}\r\n`, "latin1"),
        Buffer.from(v),
        Buffer.from("\r\n"),
      ]),
      expect: { op, key: k, flags, exptime, value: Buffer.from(v), version: 0n, noreply, sync: undefined },
    })),
  fc.tuple(key, fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), value).map(([k, cas, v]) => ({
    wire: Buffer.concat([
      Buffer.from(`cas ${k} 0 0 ${v.length} ${cas}\r\n`, "latin1"),
      Buffer.from(v),
      Buffer.from("\r\n"),
    ]),
    expect: {
      op: "cas",
      key: k,
      flags: 0,
      exptime: 0,
      value: Buffer.from(v),
      version: cas,
      noreply: false,
      sync: undefined,
    },
  })),
  fc
    .tuple(fc.constantFrom("incr", "decr"), key, fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }))
    .map(([op, k, d]) => ({
      wire: Buffer.from(`${op} ${k} ${d}\r\n`, "latin1"),
      expect: { op, key: k, delta: d, noreply: false, sync: undefined },
    })),
  key.map((k) => ({
    wire: Buffer.from(`delete ${k}\r\n`, "latin1"),
    expect: { op: "delete", key: k, hold: 0, version: 0n, noreply: false, sync: undefined },
  })),
  fc.constantFrom("version", "ping").map((op) => ({ wire: Buffer.from(`${op}\r\n`), expect: { op } })),
);

/** Cuts a buffer at random points. */
function split(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let at = 0;
  for (const p of points) {
    out.push(buf.subarray(at, p));
    at = p;
  }
  out.push(buf.subarray(at));
  return out;
}

describe("memcached request parser", () => {
  it("parses pipelined requests identically however the bytes are split", () => {
    fc.assert(
      fc.property(
        fc.array(wireRequest, { minLength: 1, maxLength: 20 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        (reqs, cuts) => {
          const whole = Buffer.concat(reqs.map((r) => r.wire));
          const expected = reqs.map((r) => r.expect);
          expect(parseAll([whole]).requests).toEqual(expected);
          expect(parseAll(split(whole, cuts)).requests).toEqual(expected);
          expect(parseAll(split(whole, cuts), limits, false, true).requests).toEqual(expected);
          // Byte by byte: the worst case of a slow network.
          expect(parseAll([...whole].map((b) => Buffer.from([b]))).requests).toEqual(expected);
          expect(
            parseAll(
              [...whole].map((b) => Buffer.from([b])),
              limits,
              false,
              true,
            ).requests,
          ).toEqual(expected);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("stays in step after garbage lines: every garbage line gets one error, the next request parses", () => {
    const storageWords = /^\s*(set|add|replace|append|prepend|cas)( |$)/;
    const garbage = fc
      .uint8Array({ minLength: 0, maxLength: 200 })
      .map((a) => Buffer.from(a.filter((b) => b !== 10)))
      .filter((b) => !storageWords.test(b.toString("latin1")))
      // Lines after which the connection is hung up on, as memcached does (tested on their own):
      // the binary protocol's first byte, and an HTTP request line.
      .filter((b) => b[0] !== 0x80 && !/(^| )HTTP\/\S*\s*$/.test(b.toString("latin1").replace(/\r$/, "")));
    fc.assert(
      fc.property(
        fc.array(fc.tuple(garbage, wireRequest), { minLength: 1, maxLength: 10 }),
        fc.array(fc.nat()),
        (pairs, cuts) => {
          const whole = Buffer.concat(pairs.flatMap(([g, r]) => [g, Buffer.from("\r\n"), r.wire]));
          const { requests } = parseAll(split(whole, cuts), { ...limits, maxLine: 4096 });
          // Garbage may happen to be a valid command (e.g. "version"); it still yields exactly one request.
          expect(requests).toHaveLength(pairs.length * 2);
          pairs.forEach(([, r], i) => {
            expect(requests[i * 2 + 1]).toEqual(r.expect);
          });
        },
      ),
      { numRuns: 300 },
    );
  });

  it("answers a too-large value with SERVER_ERROR, skips its data block, and a set unlinks the key", () => {
    const big = Buffer.alloc(5000, 120);
    const wire = Buffer.concat([
      Buffer.from("set big 0 0 5000\r\n"),
      big,
      Buffer.from("\r\nadd big 0 0 5000\r\n"),
      big,
      Buffer.from("\r\nset big 0 0 5000 noreply\r\n"),
      big,
      Buffer.from("\r\nget big\r\n"),
    ]);
    const unlink = { op: "delete", key: "big", hold: 0, version: 0n, noreply: true, sync: undefined };
    for (const pieces of [[wire], split(wire, [3, 100, 2000, 4990, 5010, 5020, 7000, 10030, 10050])]) {
      const { requests } = parseAll(pieces);
      expect(requests).toEqual([
        unlink,
        { op: "reply", line: TOO_LARGE },
        { op: "reply", line: TOO_LARGE },
        unlink,
        { op: "get", keys: ["big"] },
      ]);
    }
  });

  it("skips the data block of a bad storage header whose length is readable", () => {
    const wire = Buffer.from(`set ${"k".repeat(251)} 0 0 3\r\nabc\r\nset k x 0 3\r\nabc\r\nversion\r\n`);
    expect(parseAll([wire]).requests).toEqual([
      { op: "reply", line: BAD_FORMAT },
      { op: "reply", line: BAD_FORMAT },
      { op: "version" },
    ]);
  });

  it("rejects a data block without its CRLF", () => {
    const { requests } = parseAll([Buffer.from("set k 0 0 1\r\nabc\r\nversion\r\n")]);
    expect(requests[0]).toEqual({ op: "reply", line: "CLIENT_ERROR bad data chunk" });
    expect(requests.at(-1)).toEqual({ op: "version" });
  });

  it("refuses keys with control characters and over the length limit", () => {
    const { requests } = parseAll([
      Buffer.from(`get a\tb\r\nget ${"x".repeat(251)}\r\nget ${"x".repeat(250)}\r\n`),
    ]);
    expect(requests).toEqual([
      { op: "reply", line: BAD_FORMAT },
      { op: "reply", line: BAD_FORMAT },
      { op: "get", keys: ["x".repeat(250)] },
    ]);
  });

  it("gives up on a line longer than the limit without buffering it", () => {
    const requests: Request[] = [];
    const fatal: string[] = [];
    const parser = new RequestParser(
      limits,
      (r) => requests.push(r),
      (l) => fatal.push(l),
    );
    const chunk = Buffer.alloc(1000, 97);
    for (let i = 0; i < 10 && fatal.length === 0; i++) parser.push(chunk);
    expect(fatal).toEqual([LINE_TOO_LONG]);
    expect(parser.buffered).toBeLessThanOrEqual(limits.maxLine);
    expect(requests).toEqual([]);
  });

  it("keeps the bytes of plain sets to forward as they came (a proxy's parser); never for gets, noreply or proxied ones", () => {
    const raws: (string | undefined)[] = [];
    const parser = new RequestParser(
      limits,
      (r) => raws.push("raw" in r && r.raw !== undefined ? r.raw.toString("latin1") : undefined),
      () => {},
      new ClusterSecret(undefined),
      { storeTooLarge: 0 },
      true,
    );
    parser.session.peer = "node";
    const plainGet = "get a b\r\n";
    const plainSet = "set k 1 2 3\r\nv\r\n\r\n";
    // A proxy writes a get's request itself: the memory a get was read into is free for the next read.
    parser.push(Buffer.from(`${plainGet}gets a\n`, "latin1"));
    expect(parser.retained).toBe(false);
    parser.push(
      Buffer.from(
        `${plainSet}set k 0 0 1 noreply\r\nx\r\n<127.0.0.1:1>set k 0 0 1\r\nx\r\nincr n 1\r\n`,
        "latin1",
      ),
    );
    // A set whose data block arrives in a later piece is encoded again by whoever forwards it.
    parser.push(Buffer.from("set s 0 0 2\r\n", "latin1"));
    parser.push(Buffer.from("ab\r\n", "latin1"));
    expect(parser.retained).toBe(true);
    expect(raws).toEqual([undefined, undefined, plainSet, undefined, undefined, undefined, undefined]);
    // A node's parser keeps nothing: the views would cost an allocation a request for nothing.
    const kept: unknown[] = [];
    const plain = new RequestParser(
      limits,
      (r) => kept.push("raw" in r ? r.raw : undefined),
      () => {},
    );
    plain.push(Buffer.from(`${plainGet}${plainSet}`, "latin1"));
    expect(kept).toEqual([undefined, undefined]);
  });

  it("parses Flare's version field and sync options from a cluster peer", () => {
    const { requests } = parseAll(
      [Buffer.from("set k 1 2 1 77 sync\r\na\r\ndelete k 0 78 noreply\r\n")],
      limits,
      true,
    );
    expect(requests).toEqual([
      {
        op: "set",
        key: "k",
        flags: 1,
        exptime: 2,
        value: Buffer.from("a"),
        version: 77n,
        noreply: false,
        sync: "sync",
      },
      { op: "delete", key: "k", hold: 0, version: 78n, noreply: true, sync: undefined },
    ]);
  });

  it("answers like memcached on malformed lines", () => {
    const lines: [string, string][] = [
      ["", "ERROR"],
      ["bogus", "ERROR"],
      ["GET k", "ERROR"],
      ["get", "ERROR"],
      ["set k 0 0", "ERROR"],
      ["set k 0 0 -1", BAD_FORMAT],
      ["incr k abc", "CLIENT_ERROR invalid numeric delta argument"],
      ["touch k", "ERROR"],
      ["touch k x", "CLIENT_ERROR invalid exptime argument"],
      ["flush_all abc", "CLIENT_ERROR invalid exptime argument"],
      ["verbosity", "ERROR"],
      ["verbosity a b c", "ERROR"],
      ["quit now", "ERROR"],
    ];
    for (const [line, reply] of lines) {
      expect(parseAll([Buffer.from(`${line}\r\n`)]).requests, line).toEqual([{ op: "reply", line: reply }]);
    }
  });

  it("gives a plain client memcached's answers, never cluster traffic", () => {
    const wire = [
      // A 6th number is ignored (memcached), never a version; a 7th word makes the line an ERROR
      // and the data block is then read as a command, as memcached reads it.
      "set vk 0 0 1 18446744073709551615\r\nX\r\n",
      "set vk 0 0 1 5 noreply\r\nY\r\n",
      "cas vk 0 0 1 7 junk\r\nZ\r\n",
      "delete vk 0 5\r\n",
      "<127.0.0.1:1@1>set victim 0 0 8\r\nAAAAAAAA\r\n",
      "node sync 999999\r\nNODE localhost 1 master active 0 1 0\r\nEND\r\n",
      "dump\r\n",
      "ping\r\n",
    ].join("");
    const { requests, fatal } = parseAll([Buffer.from(wire, "latin1")]);
    expect(fatal).toEqual([]);
    expect(requests).toEqual([
      {
        op: "set",
        key: "vk",
        flags: 0,
        exptime: 0,
        value: Buffer.from("X"),
        version: 0n,
        noreply: false,
        sync: undefined,
      },
      { op: "reply", line: "ERROR" },
      { op: "reply", line: "ERROR" },
      {
        op: "cas",
        key: "vk",
        flags: 0,
        exptime: 0,
        value: Buffer.from("Z"),
        version: 7n,
        noreply: false,
        sync: undefined,
      },
      { op: "reply", line: "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]" },
      { op: "reply", line: "ERROR" },
      { op: "reply", line: "ERROR" },
      { op: "reply", line: "ERROR" },
      { op: "reply", line: "ERROR" },
      { op: "reply", line: "ERROR" },
      { op: "reply", line: "ERROR" },
      { op: "ping" },
    ]);
  });

  it("makes a connection a peer only with the secret's proof", () => {
    const run = (secret: ClusterSecret, prove: (nonce: string) => string) => {
      const out: Request[] = [];
      const fatal: string[] = [];
      const parser = new RequestParser(
        limits,
        (r) => out.push(r),
        (l) => fatal.push(l),
        secret,
      );
      parser.push(Buffer.from("cluster hello\r\n"));
      const challenge = out[0] as { op: "reply"; line: string };
      const nonce = /^CHALLENGE ([0-9a-f]{32})$/.exec(challenge.line)?.[1] ?? "";
      expect(nonce).not.toBe("");
      parser.push(Buffer.from(`cluster auth node 0123456789abcdef ${prove(nonce)}\r\nping\r\n`));
      return { out: out.slice(1), fatal, trusted: parser.trusted };
    };
    const secret = new ClusterSecret("s3cret");
    const good = run(secret, (n) => secret.proof("node", n, "0123456789abcdef"));
    expect(good).toEqual({
      out: [
        { op: "reply", line: "OK" },
        { op: "ping", from: "node" },
      ],
      fatal: [],
      trusted: true,
    });
    const wrong = run(secret, (n) => new ClusterSecret("guess").proof("node", n, "0123456789abcdef"));
    expect(wrong).toEqual({ out: [], fatal: [AUTH_FAILED], trusted: false });
    // A proof is good for its own challenge only: replaying one fails.
    const replayed = run(secret, () => secret.proof("node", "0".repeat(32), "0123456789abcdef"));
    expect(replayed.trusted).toBe(false);
    // Open mode runs the same exchange and takes any proof.
    expect(run(new ClusterSecret(undefined), () => "x").trusted).toBe(true);
  });

  it("hangs up on a binary-protocol first byte and on an HTTP request line, answering nothing", () => {
    for (const wire of [Buffer.from([0x80, 0x0a, 0, 0]), Buffer.from("GET / HTTP/1.1\r\nget a\r\n")]) {
      const { requests, fatal } = parseAll([wire]);
      expect(requests).toEqual([]);
      expect(fatal).toEqual([""]);
    }
    // Only the connection's first byte says binary: later, 0x80 is a byte of an unknown command.
    expect(parseAll([Buffer.from("get a\r\n\x80x\r\n", "latin1")]).requests).toEqual([
      { op: "get", keys: ["a"] },
      { op: "reply", line: "ERROR" },
    ]);
  });
});
