/** Engines under failure: a leveldb node killed with -9, and a Redis that dies under load. */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { startNodeProcess, stopAll } from "../helpers/processes.js";
import { RawClient } from "../helpers/raw-client.js";
import { RedisServer, redisAvailable } from "../helpers/redis.js";

afterAll(stopAll);

describe("leveldb node restart", () => {
  it("after kill -9, every live item is back with flags and version, every expired one is gone", async () => {
    const dir = mkdtempSync(join(tmpdir(), "flare-restart-"));
    const first = await startNodeProcess(["--storage-type", "leveldb", "--data-dir", dir]);
    const c = await RawClient.open(first.port);
    const n = 10_000;
    const expiring = (i: number) => i % 3 === 0;
    const twice = (i: number) => i % 5 === 0;
    let req = "";
    let replies = 0;
    for (let i = 0; i < n; i++) {
      const exptime = expiring(i) ? 1 : i % 3 === 1 ? 3600 : 0;
      const value = `value-${i}`;
      req += `set k${i} ${i} ${exptime} ${value.length}\r\n${value}\r\n`;
      replies++;
      if (twice(i)) {
        req += `set k${i} ${i} ${exptime} ${value.length}\r\n${value}\r\n`;
        replies++;
      }
    }
    c.send(req);
    const acks = await c.readUntil("STORED\r\n".repeat(1), 30_000);
    let got = acks.split("STORED\r\n").length - 1;
    while (got < replies) got += (await c.readUntil("STORED\r\n", 30_000)).split("STORED\r\n").length - 1;
    expect(got).toBe(replies);
    // Every write is acknowledged: now the node dies without any chance to flush.
    first.proc.kill("SIGKILL");
    await new Promise((r) => first.proc.once("exit", r));
    c.close();
    await new Promise((r) => setTimeout(r, 1100));

    const second = await startNodeProcess(["--storage-type", "leveldb", "--data-dir", dir]);
    const d = await RawClient.open(second.port);
    let query = "";
    for (let i = 0; i < n; i++) query += `gets k${i}\r\n`;
    d.send(query);
    let out = "";
    let ends = 0;
    while (ends < n) {
      const part = await d.readUntil("END\r\n", 30_000);
      out += part;
      ends += part.split("END\r\n").length - 1;
    }
    const found = new Map<string, string>();
    for (const m of out.matchAll(/VALUE (k\d+) (\d+) (\d+) (\d+)\r\n([^\r]*)\r\n/g)) {
      found.set(m[1] as string, `${m[2]} ${m[4]} ${m[5]}`);
    }
    let live = 0;
    for (let i = 0; i < n; i++) {
      if (expiring(i)) {
        expect(found.has(`k${i}`), `k${i} expired`).toBe(false);
      } else {
        live++;
        expect(found.get(`k${i}`), `k${i}`).toBe(`${i} ${twice(i) ? 2 : 1} value-${i}`);
      }
    }
    expect(found.size).toBe(live);
    d.close();
    await second.stop();
  });
});

describe("replies wait their turn on an engine that answers later", () => {
  it("a deep pipeline of sets and gets to a leveldb node, read slowly, comes back in order", async () => {
    const dir = mkdtempSync(join(tmpdir(), "flare-order-"));
    const node = await startNodeProcess(["--storage-type", "leveldb", "--data-dir", dir]);
    const c = await RawClient.open(node.port);
    const n = 20_000;
    let req = "";
    let expected = "";
    for (let i = 0; i < n; i++) {
      const v = String(i);
      req += `set p${i} 0 0 ${v.length}\r\n${v}\r\nget p${i}\r\n`;
      expected += `STORED\r\nVALUE p${i} 0 ${v.length}\r\n${v}\r\nEND\r\n`;
    }
    c.socket.pause();
    c.send(req);
    await new Promise((r) => setTimeout(r, 300));
    c.socket.resume();
    const out = await c.readUntil(`VALUE p${n - 1} 0 ${String(n - 1).length}\r\n${n - 1}\r\nEND\r\n`, 30_000);
    expect(out.length).toBe(expected.length);
    expect(out === expected).toBe(true);
    c.close();
    await node.stop();
  });
});

describe.skipIf(!redisAvailable)("redis engine faults", () => {
  it("answers SERVER_ERROR without hanging while Redis is gone, fails ping, and recovers by itself", async () => {
    const redis = await RedisServer.start();
    const node = await startNodeProcess([
      "--storage-type",
      "redis",
      "--redis-url",
      redis.url,
      "--redis-timeout",
      "500",
    ]);
    const c = await RawClient.open(node.port);
    expect(await c.ask("set a 0 0 1\r\nx\r\n")).toBe("STORED\r\n");

    // A load loop runs through the whole outage: every request gets an answer in bounded time.
    let running = true;
    const answers: string[] = [];
    let slowest = 0;
    const load = (async () => {
      const l = await RawClient.open(node.port);
      for (let i = 0; running; i++) {
        const t0 = performance.now();
        const reply = await l.ask(`set load${i % 100} 0 0 2\r\nok\r\n`);
        if (l.closed) throw new Error(`the node closed the connection (exit code ${node.proc.exitCode})`);
        slowest = Math.max(slowest, performance.now() - t0);
        answers.push(reply.trimEnd());
      }
      l.close();
    })();

    await new Promise((r) => setTimeout(r, 300));
    await redis.kill();
    await new Promise((r) => setTimeout(r, 300));
    expect(await c.ask("get a\r\n")).toBe("SERVER_ERROR storage unavailable\r\n");
    expect(await c.ask("ping\r\n")).toBe("SERVER_ERROR storage error\r\n");
    expect(await c.ask("set b 0 0 1\r\ny\r\n")).toBe("SERVER_ERROR storage unavailable\r\n");
    await new Promise((r) => setTimeout(r, 500));

    await redis.restart();
    // The client reconnects within its retry interval (at most 1 s).
    const deadline = Date.now() + 5000;
    let pong = "";
    while (Date.now() < deadline && pong !== "OK\r\n") {
      pong = await c.ask("ping\r\n");
      if (pong !== "OK\r\n") await new Promise((r) => setTimeout(r, 100));
    }
    expect(pong).toBe("OK\r\n");
    expect(await c.ask("set b 0 0 1\r\ny\r\n")).toBe("STORED\r\n");
    expect(await c.ask("get b\r\n", "END\r\n")).toBe("VALUE b 0 1\r\ny\r\nEND\r\n");
    await new Promise((r) => setTimeout(r, 300));
    running = false;
    await load;

    expect(answers.filter((a) => a === "STORED").length).toBeGreaterThan(10);
    expect(answers.filter((a) => a.startsWith("SERVER_ERROR")).length).toBeGreaterThan(0);
    expect(answers.every((a) => a === "STORED" || a.startsWith("SERVER_ERROR"))).toBe(true);
    // Bounded: no request waited much longer than the Redis timeout.
    expect(slowest).toBeLessThan(3000);
    expect(node.proc.exitCode).toBeNull();
    c.close();
    await node.stop();
    await redis.stop();
  });
});
