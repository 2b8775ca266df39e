import { describe, expect, it } from "vitest";
import { LineReader } from "../../protocol/line-reader.js";

describe("LineReader", () => {
  it("cuts lines however the bytes are split, with or without CR, and keeps the unfinished one", () => {
    const text = "STORED\r\nNOT_FOUND\nVALUE k 0 1\r\n\r\nEND\r\npartial";
    for (let size = 1; size <= text.length; size++) {
      const reader = new LineReader();
      const lines: string[] = [];
      for (let at = 0; at < text.length; at += size)
        lines.push(...reader.push(Buffer.from(text.slice(at, at + size), "latin1")));
      expect(lines, `pieces of ${size}`).toEqual(["STORED", "NOT_FOUND", "VALUE k 0 1", "", "END"]);
      expect(reader.pending).toBe("partial".length);
    }
    const reader = new LineReader();
    reader.push(Buffer.from("abc"));
    reader.clear();
    expect(reader.push(Buffer.from("d\r\n"))).toEqual(["d"]);
  });
});
