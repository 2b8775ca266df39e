/** Reading a get/gets reply: its VALUE blocks, up to END (or anything else). */

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
