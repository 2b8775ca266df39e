/**
 * A connection reads into memory it reuses once no request kept a view of it. Values on their way
 * to an engine that writes later (leveldb batches) or split across reads must still arrive intact:
 * a pipeline of binary values in ragged pieces, checked reply by reply and key by key.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { validateConfig } from "../../common/config.js";
import { createLogger } from "../../common/log.js";
import { nodeConfigSpec } from "../../storage/config.js";
import { startNode } from "../../storage/node.js";

/** Deterministic bytes, CR and LF included. */
function random(seed: number): () => number {
  let s = seed;
  return () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s >>> 8;
  };
}

/** What arrives until `bytes` did (or the connection ended). */
async function collect(socket: Socket, bytes: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let seen = 0;
  return new Promise((resolve, reject) => {
    socket.on("data", (d: Buffer) => {
      parts.push(d);
      seen += d.length;
      if (seen >= bytes) resolve(Buffer.concat(parts));
    });
    socket.on("close", () => resolve(Buffer.concat(parts)));
    socket.on("error", reject);
  });
}

describe.each(["memory", "leveldb"])("values read into reused memory, %s engine", (engine) => {
  it("a ragged pipeline of binary sets and gets: every reply and every key as modelled", async () => {
    const dir = mkdtempSync(join(tmpdir(), "flare-reuse-"));
    const config = new Map([
      ["server-port", "0"],
      ["storage-type", engine],
      ["data-dir", dir],
    ]);
    const node = await startNode(validateConfig(nodeConfigSpec, config), createLogger());
    try {
      const next = random(7);
      const model = new Map<string, Buffer>();
      const flags = new Map<string, number>();
      const requests: Buffer[] = [];
      const expected: Buffer[] = [];
      for (let i = 0; i < 3000; i++) {
        const key = `k${next() % 200}`;
        const value = Buffer.alloc(1 + (next() % 2500));
        for (let j = 0; j < value.length; j++) value[j] = next() & 0xff;
        requests.push(Buffer.from(`set ${key} ${i} 0 ${value.length}\r\n`), value, Buffer.from("\r\n"));
        expected.push(Buffer.from("STORED\r\n"));
        model.set(key, value);
        flags.set(key, i);
        const probe = `k${next() % 200}`;
        requests.push(Buffer.from(`get ${probe}\r\n`));
        const held = model.get(probe);
        expected.push(
          held === undefined
            ? Buffer.from("END\r\n")
            : Buffer.concat([
                Buffer.from(`VALUE ${probe} ${flags.get(probe)} ${held.length}\r\n`),
                held,
                Buffer.from("\r\nEND\r\n"),
              ]),
        );
      }
      const stream = Buffer.concat(requests);
      const socket = connect({ port: node.port, host: "127.0.0.1" });
      await new Promise((r) => socket.once("connect", r));
      const want = Buffer.concat(expected);
      const replies = collect(socket, want.length);
      // Ragged pieces, some waiting a tick, so reads end anywhere: inside lines and values.
      for (let at = 0; at < stream.length; ) {
        const n = 1 + (next() % 9000);
        socket.write(stream.subarray(at, at + n));
        at += n;
        if (next() % 4 === 0) await new Promise((r) => setImmediate(r));
      }
      const got = await replies;
      expect(got.length).toBe(want.length);
      expect(got.equals(want)).toBe(true);
      // Then every key, one get each, against the model.
      const check = connect({ port: node.port, host: "127.0.0.1" });
      await new Promise((r) => check.once("connect", r));
      const keys = [...model.keys()];
      let total = 0;
      for (const key of keys) {
        const v = model.get(key) as Buffer;
        total += `VALUE ${key} ${flags.get(key)} ${v.length}\r\n`.length + v.length + 7;
      }
      const all = collect(check, total);
      check.write(keys.map((k) => `get ${k}\r\n`).join(""));
      const text = await all;
      let at = 0;
      for (const key of keys) {
        const value = model.get(key) as Buffer;
        const head = Buffer.from(`VALUE ${key} ${flags.get(key)} ${value.length}\r\n`);
        expect(text.subarray(at, at + head.length).toString("latin1")).toBe(head.toString("latin1"));
        at += head.length;
        expect(text.subarray(at, at + value.length).equals(value)).toBe(true);
        at += value.length + 7;
      }
      expect(at).toBe(text.length);
      socket.destroy();
      check.destroy();
    } finally {
      await node.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
