/** A real node process checked by memcached's own conformance tool and by a widely used npm client. */
import { execFile } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import Memcached from "memcached";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NodeProcess, startNodeProcess, stopAll } from "../helpers/processes.js";
import { RedisServer, redisAvailable } from "../helpers/redis.js";
import { requireCommand } from "../helpers/tools.js";

const run = promisify(execFile);
let node: NodeProcess;
let redis: RedisServer | undefined;

beforeAll(async () => {
  if (redisAvailable) redis = await RedisServer.start();
  node = await startNodeProcess();
});
afterAll(async () => {
  await stopAll();
  await redis?.stop();
});

async function memcapable(port: number): Promise<void> {
  requireCommand("memccapable", "libmemcached-tools");
  const result = await run("memccapable", ["-a", "-h", "127.0.0.1", "-p", String(port), "-t", "5"]).catch(
    (err: { stdout: string; stderr: string }) => err,
  );
  const out = `${result.stdout}${result.stderr}`;
  const lines = out.split("\n").filter((l) => l.startsWith("ascii "));
  expect(lines.length).toBeGreaterThanOrEqual(27);
  expect(out).toContain("All tests passed");
  expect(out).not.toContain("FAIL");
}

describe("memcapable -a against a node", () => {
  it("passes every ascii test on the memory engine", async () => {
    await memcapable(node.port);
  });

  it("passes every ascii test on the leveldb engine", async () => {
    const dir = mkdtempSync(join(tmpdir(), "flare-memcapable-"));
    const leveldb = await startNodeProcess(["--storage-type", "leveldb", "--data-dir", dir]);
    await memcapable(leveldb.port);
    await leveldb.stop();
  });

  it.skipIf(!redisAvailable)("passes every ascii test on the redis engine", async () => {
    const onRedis = await startNodeProcess([
      "--storage-type",
      "redis",
      "--redis-url",
      (redis as RedisServer).url,
    ]);
    await memcapable(onRedis.port);
    await onRedis.stop();
  });
});

describe("the memcached npm client against a node", () => {
  let client: Memcached;
  beforeAll(() => {
    client = new Memcached(`127.0.0.1:${node.port}`, { retries: 0, timeout: 2000, idle: 1000 });
  });
  afterAll(() => client.end());

  const call = <T>(fn: (cb: (err: unknown, data: T) => void) => void): Promise<T> =>
    new Promise((resolve, reject) => fn((err, data) => (err ? reject(err) : resolve(data))));

  it("round-trips every command it offers", async () => {
    expect(await call<boolean>((cb) => client.set("greeting", "hello", 100, cb))).toBe(true);
    expect(await call((cb) => client.get("greeting", cb))).toBe("hello");
    expect(await call<boolean>((cb) => client.add("greeting", "again", 100, cb)).catch(() => false)).toBe(
      false,
    );
    expect(await call<boolean>((cb) => client.add("fresh", "new", 100, cb))).toBe(true);
    expect(await call<boolean>((cb) => client.replace("fresh", "newer", 100, cb))).toBe(true);
    expect(await call<boolean>((cb) => client.append("fresh", "!", cb))).toBe(true);
    expect(await call<boolean>((cb) => client.prepend("fresh", "~", cb))).toBe(true);
    expect(await call((cb) => client.get("fresh", cb))).toBe("~newer!");

    const multi = await call<Record<string, unknown>>((cb) =>
      client.getMulti(["greeting", "fresh", "absent"], cb),
    );
    expect(multi).toEqual({ greeting: "hello", fresh: "~newer!" });

    const gets = await call<Record<string, unknown> & { cas: string }>((cb) => client.gets("greeting", cb));
    expect(gets.greeting).toBe("hello");
    expect(await call<boolean>((cb) => client.cas("greeting", "bonjour", gets.cas, 100, cb))).toBe(true);
    expect(await call<boolean>((cb) => client.cas("greeting", "stale", gets.cas, 100, cb))).toBe(false);
    expect(await call((cb) => client.get("greeting", cb))).toBe("bonjour");

    expect(await call<boolean>((cb) => client.set("counter", 10, 0, cb))).toBe(true);
    expect(await call((cb) => client.incr("counter", 5, cb))).toBe(15);
    expect(await call((cb) => client.decr("counter", 20, cb))).toBe(0);
    expect(await call((cb) => client.incr("no-counter", 1, cb))).toBe(false);

    expect(await call<boolean>((cb) => client.touch("greeting", 1, cb))).toBe(true);
    expect(await call<boolean>((cb) => client.del("fresh", cb))).toBe(true);
    expect(await call((cb) => client.get("fresh", cb))).toBeUndefined();

    const json = { nested: [1, 2, 3], ok: true };
    expect(await call<boolean>((cb) => client.set("json", json, 0, cb))).toBe(true);
    expect(await call((cb) => client.get("json", cb))).toEqual(json);
    const big = "x".repeat(500_000);
    expect(await call<boolean>((cb) => client.set("big", big, 0, cb))).toBe(true);
    expect(await call((cb) => client.get("big", cb))).toBe(big);

    const version = await call<{ version: string }[]>((cb) => client.version(cb));
    // A numeric version, as clients parse it; flare-ts's own is in stats.
    expect(version[0]?.version).toBe("1.6.18");
    const stats = await call<Record<string, unknown>[]>((cb) => client.stats(cb));
    expect(Number(stats[0]?.curr_items)).toBeGreaterThanOrEqual(3);
    expect(Number(stats[0]?.cmd_get)).toBeGreaterThan(0);
    expect(stats[0]?.flare_ts_version).toBe("flare-ts-0.1.0");

    const flushed = await call<boolean[]>((cb) => client.flush(cb));
    expect(flushed).toEqual([true]);
    expect(await call((cb) => client.get("greeting", cb))).toBeUndefined();
  });
});
