/** Reading replies: a get/gets reply's VALUE blocks, up to END (or anything else); meta replies. */

export interface ValueBlock {
  key: string;
  flags: number;
  /** The cas/version field of a gets reply; "" for get. */
  version: string;
  value: Buffer;
  /** The whole block, header line to the CRLF after the data, as it can be forwarded. */
  block: Buffer;
}

export function valueBlocks(reply: Buffer): ValueBlock[] {
  const out: ValueBlock[] = [];
  let pos = 0;
  while (pos < reply.length) {
    const nl = reply.indexOf(10, pos);
    if (nl < 0) break;
    const line = reply.toString("latin1", pos, nl).trimEnd();
    if (!line.startsWith("VALUE ")) break;
    const [, key = "", flags, size, version = ""] = line.split(" ");
    const start = nl + 1;
    const end = start + Number(size);
    out.push({
      key,
      flags: Number(flags),
      version,
      value: reply.subarray(start, end),
      block: reply.subarray(pos, end + 2),
    });
    pos = end + 2;
  }
  return out;
}

/**
 * Where the meta reply whose line starts at `at` and ends at `nl` (its LF) ends: after that line,
 * or for `VA <n> ...` after its n-byte data block and CRLF (possibly past what was read so far).
 */
export function metaReplyEnd(buf: Buffer, at: number, nl: number): number {
  if (buf[at] !== 86 || buf[at + 1] !== 65 || buf[at + 2] !== 32) return nl + 1;
  let n = 0;
  for (let i = at + 3, c = buf[i] as number; c >= 48 && c <= 57; c = buf[++i] as number) n = n * 10 + c - 48;
  return nl + 1 + n + 2;
}
