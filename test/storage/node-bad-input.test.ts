/** Bad and hostile input against a real node: each gets its answer or a disconnect, others go on. */
import { readFileSync } from "node:fs";
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NodeProcess, startNodeProcess, stopAll } from "../helpers/processes.js";
import { RawClient } from "../helpers/raw-client.js";
import { slowReader } from "../helpers/slow-reader.js";

const MAX_CONNECTIONS = 6;
let node: NodeProcess;

beforeAll(async () => {
  node = await startNodeProcess(["--max-connection", String(MAX_CONNECTIONS), "--net-read-timeout", "1"]);
});
afterAll(stopAll);

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1]) * 1024;
}

/** Proves the node still answers a fresh client. */
async function stillServes(): Promise<void> {
  const c = await RawClient.open(node.port);
  expect(await c.ask("set alive 0 0 2\r\nok\r\n")).toBe("STORED\r\n");
  expect(await c.ask("get alive\r\n", "END\r\n")).toBe("VALUE alive 0 2\r\nok\r\nEND\r\n");
  c.close();
}

describe("bad input against a node", () => {
  it("answers garbage lines with errors and keeps the connection in step", async () => {
    const c = await RawClient.open(node.port);
    c.send("\x00\x01\x02 garbage\r\n\xff\xfe\r\nGET x\r\nset\r\nset k 0 0 zz\r\n");
    expect(await c.readUntil("CLIENT_ERROR bad command line format\r\n")).toBe(
      "ERROR\r\nERROR\r\nERROR\r\nERROR\r\nCLIENT_ERROR bad command line format\r\n",
    );
    expect(await c.ask("version\r\n")).toMatch(/^VERSION /);
    c.close();
    await stillServes();
  });

  it("closes a connection sending a 100 MB line without buffering it", async () => {
    const before = rssBytes(node.proc.pid as number);
    const socket = connect({ port: node.port, host: "127.0.0.1" });
    let reply = "";
    socket.on("data", (d: Buffer) => {
      reply += d.toString();
    });
    socket.on("error", () => {});
    const chunk = Buffer.alloc(1024 * 1024, 97);
    let sent = 0;
    const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
    await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
    while (sent < 100 && !socket.destroyed) {
      if (!socket.write(chunk)) await Promise.race([new Promise((r) => socket.once("drain", r)), closed]);
      sent++;
    }
    await closed;
    expect(reply).toBe("CLIENT_ERROR line too long\r\n");
    expect(rssBytes(node.proc.pid as number) - before).toBeLessThan(50 * 1024 * 1024);
    await stillServes();
  });

  it("refuses an oversized value, swallows its data and serves the next request", async () => {
    const c = await RawClient.open(node.port);
    const big = Buffer.alloc(2 * 1024 * 1024, 98);
    c.send(
      Buffer.concat([Buffer.from(`set big 0 0 ${big.length}\r\n`), big, Buffer.from("\r\nget big\r\n")]),
    );
    expect(await c.readUntil("END\r\n")).toBe("SERVER_ERROR object too large for cache\r\nEND\r\n");
    c.close();
  });

  it("drops a client that stalls mid-value after net-read-timeout and stores nothing", async () => {
    const c = await RawClient.open(node.port);
    c.send("set stalled 0 0 10\r\nabc");
    // Meanwhile the node serves others.
    await stillServes();
    expect(await c.waitClosed(5_000)).toBe("");
    const d = await RawClient.open(node.port);
    expect(await d.ask("get stalled\r\n", "END\r\n")).toBe("END\r\n");
    d.close();
  });

  it("refuses connections past max-connection with an error line and serves the rest", async () => {
    const clients = await Promise.all(
      Array.from({ length: MAX_CONNECTIONS * 2 }, () => RawClient.open(node.port)),
    );
    await new Promise((r) => setTimeout(r, 200));
    const refused = clients.filter((c) => c.closed);
    const served = clients.filter((c) => !c.closed);
    expect(refused.length).toBe(MAX_CONNECTIONS);
    for (const c of refused) expect(await c.waitClosed()).toBe("ERROR Too many open connections\r\n");
    for (const c of served) expect(await c.ask("version\r\n")).toMatch(/^VERSION /);
    for (const c of served) c.close();
    await new Promise((r) => setTimeout(r, 100));
    await stillServes();
    const stats = await RawClient.open(node.port);
    expect(await stats.ask("stats\r\n", "END\r\n")).toMatch(
      new RegExp(`STAT rejected_connections ${MAX_CONNECTIONS}\\r\\n`),
    );
    stats.close();
  });

  it("keeps replies in order for a deep pipeline and a client that reads slowly", async () => {
    const c = await RawClient.open(node.port);
    const n = 20_000;
    let req = "";
    for (let i = 0; i < n; i++) req += `set p${i} 0 0 ${String(i).length}\r\n${i}\r\nget p${i}\r\n`;
    c.socket.pause();
    c.send(req);
    await new Promise((r) => setTimeout(r, 300));
    c.socket.resume();
    const out = await c.readUntil(`VALUE p${n - 1} 0 ${String(n - 1).length}\r\n${n - 1}\r\nEND\r\n`, 20_000);
    let expected = "";
    for (let i = 0; i < n; i++) expected += `STORED\r\nVALUE p${i} 0 ${String(i).length}\r\n${i}\r\nEND\r\n`;
    expect(out === expected).toBe(true);
    c.close();
  });

  it("a client that stops reading while it sends one request a packet gets every reply in order once it reads", async () => {
    const { got, expected } = await slowReader(node.port);
    expect(got.length).toBe(expected.length);
    expect(got.equals(expected)).toBe(true);
    await stillServes();
  });
});
