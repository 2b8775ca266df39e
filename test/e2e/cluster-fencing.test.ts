/**
 * Fencing with real processes: a master frozen with SIGSTOP under load through the proxy is
 * replaced; once it thaws it must apply no client write, neither from clients with a stale map nor
 * from direct connections (once it knows it holds no partition, it passes them on to the new
 * master), and no write acknowledged to anyone is lost. Five rounds each in sync mode
 * (the slaves fence a stale master) and async mode (the master lease does). Then a frozen Redis
 * under a node: the node fails over as a dead one would.
 */
import { readFileSync } from "node:fs";
import { afterAll, describe, expect, it, onTestFinished } from "vitest";
import {
  admin,
  dumpOf,
  joinArgs,
  nodeState,
  pairUp,
  type SeedLayout,
  seedLayout,
  startIndex,
  until,
} from "../helpers/cluster.js";
import { Load, missing } from "../helpers/load.js";
import { type NodeProcess, startNodeProcess, stopAll } from "../helpers/processes.js";
import { RawClient } from "../helpers/raw-client.js";
import { RedisServer, redisAvailable } from "../helpers/redis.js";
import { startWorker } from "../helpers/worker.js";

afterAll(stopAll);

const TOKEN = "fencing-test-secret";

/** Whether the kernel has the process stopped (state T): only then is a write sent "while frozen". */
function stopped(pid: number): boolean {
  const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
  return stat.slice(stat.lastIndexOf(")") + 2).startsWith("T");
}

async function roleOf(layout: SeedLayout, node: NodeProcess): Promise<string> {
  return nodeState(layout.index, node.port);
}

describe.each([
  ["sync", []],
  ["async", ["--master-lease", "auto"]],
])("SIGSTOP of the master under load, %s replication", (mode, extra) => {
  it("5 rounds: the old master applies nothing after SIGCONT, and no acknowledged write is lost", async () => {
    const layout = await seedLayout(TOKEN, ["--replication-type", mode, ...extra]);
    const load = new Load();
    await load.start(layout.proxy.port);
    let master = layout.master;
    let slave = layout.slave;
    const promotions: number[] = [];
    const staleAcks: string[] = [];
    const staleReplies: string[] = [];
    /** Writes the old master acknowledged after SIGCONT: passed on to the new master, not applied. */
    const passedOn: string[] = [];
    for (let round = 0; round < 5; round++) {
      await new Promise((r) => setTimeout(r, 300));
      const direct = await RawClient.open(master.port);
      // A client with a stale map or a direct connection, writing to the old master while it is
      // frozen (the write waits in its socket) and after it thaws.
      master.proc.kill("SIGSTOP");
      const stoppedAt = Date.now();
      await until("the master to be stopped", async () => stopped(master.proc.pid as number));
      direct.send(`set direct-${round}-frozen 0 0 1\r\nf\r\n`);
      await until(
        "the slave to be promoted",
        async () => (await roleOf(layout, slave)) === "master/active",
        15_000,
      );
      promotions.push(Date.now() - stoppedAt);
      await new Promise((r) => setTimeout(r, 300));
      master.proc.kill("SIGCONT");
      const first = await direct.readUntil("\r\n", 5_000);
      staleReplies.push(first.trim());
      if (first.startsWith("STORED")) staleAcks.push(`round ${round}: frozen write`);
      const acked: string[] = [];
      for (let i = 0; i < 5; i++) {
        const reply = await direct.ask(`set direct-${round}-${i} 0 0 1\r\nd\r\n`);
        if (reply.startsWith("STORED")) acked.push(`direct-${round}-${i}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      direct.close();
      // What it acknowledged is on the new master, and not in the old master's own store.
      if (acked.length > 0) {
        const [onNew, onOld] = await Promise.all([dumpOf(slave.port, TOKEN), dumpOf(master.port, TOKEN)]);
        for (const key of acked) {
          if (!onNew.has(key) || onOld.has(key))
            staleAcks.push(`round ${round}: ${key} applied by the old master`);
          else passedOn.push(key);
        }
      }
      // Back as a proxy, then rebuilt as the new master's slave: the next round stops the other one.
      await until(
        "the old master to be back as a proxy",
        async () => (await roleOf(layout, master)) === "proxy/active",
      );
      await layout.change(`node role localhost ${master.port} slave 2 0`);
      await until(
        "the old master to be rebuilt as a slave",
        async () => (await roleOf(layout, master)) === "slave/active",
        30_000,
      );
      [master, slave] = [slave, master];
    }
    await load.stop();
    console.log(
      `${mode}: promotion after SIGSTOP ${promotions.join(", ")} ms; ${load.acked.size} acknowledged sets through the proxy, ${load.failedSets.length} failed, ${load.wrongGets.length} wrong gets; old master's first replies: ${[...new Set(staleReplies)].join(" | ")}; ${passedOn.length} later writes it passed on to the new master`,
    );
    expect(staleAcks).toEqual([]);
    expect(staleReplies.every((r) => r.startsWith("SERVER_ERROR not a master"))).toBe(true);
    expect(load.acked.size).toBeGreaterThan(100);
    expect(await missing(master.port, load.acked)).toEqual([]);
    for (let round = 0; round < 5; round++)
      expect(await admin(master.port, `get direct-${round}-frozen`, "END\r\n")).toBe("END\r\n");
    expect(load.wrongGets).toEqual([]);
    // The last rebuilt slave holds exactly what the master holds.
    const [onMaster, onSlave] = await Promise.all([dumpOf(master.port, TOKEN), dumpOf(slave.port, TOKEN)]);
    expect(onSlave).toEqual(onMaster);
    expect(passedOn.filter((key) => !onMaster.has(key))).toEqual([]);
    await layout.stop();
  }, 180_000);
});

describe.runIf(redisAvailable || process.env.CI)("a frozen Redis under the master", () => {
  it("fails the node over within monitor-interval x threshold + 1 s, and the node stops taking writes", async () => {
    const [redisA, redisB] = await Promise.all([RedisServer.start(), RedisServer.start()]);
    // Also when an assertion fails: a frozen Redis would outlive the run.
    onTestFinished(() => Promise.all([redisA.stop(), redisB.stop()]).then(() => undefined));
    const index = await startIndex(["--cluster-token", TOKEN]);
    const node = (redis: RedisServer) =>
      startNodeProcess(
        joinArgs(index, ["--cluster-token", TOKEN, "--storage-type", "redis", "--redis-url", redis.url]),
      );
    const master = await node(redisA);
    const slave = await node(redisB);
    await pairUp(index, TOKEN, master, slave);
    expect(await admin(master.port, "set r 0 0 1\r\n1")).toBe("STORED\r\n");

    redisA.signal("SIGSTOP");
    const frozenAt = Date.now();
    await until(
      "the slave to be promoted",
      async () => (await nodeState(index, slave.port)) === "master/active",
      15_000,
    );
    const after = Date.now() - frozenAt;
    console.log(`frozen Redis: slave promoted ${after} ms after SIGSTOP (limit 4000 ms)`);
    expect(after).toBeLessThanOrEqual(4000);
    expect(index.stderr()).toMatch(new RegExp(`"msg":"node down".*localhost:${master.port}`));
    // The old master heard the map that has it down: with its Redis back, it still refuses writes.
    redisA.signal("SIGCONT");
    await until("the old master to know it is down", async () =>
      (await admin(master.port, "set r 0 0 1\r\n2")).startsWith("SERVER_ERROR not a master"),
    );
    expect(await admin(slave.port, "get r", "END\r\n")).toBe("VALUE r 0 1\r\n1\r\nEND\r\n");
    await Promise.all([master.stop(), slave.stop()]);
    await index.stop();
  }, 60_000);

  it("a slave that cannot apply a write makes a sync write fail, never a silent STORED", async () => {
    const redis = await RedisServer.start();
    onTestFinished(() => redis.stop());
    const index = await startIndex(["--cluster-token", TOKEN]);
    const sync = ["--cluster-token", TOKEN, "--replication-type", "sync"];
    const master = await startNodeProcess(joinArgs(index, sync));
    const slave = await startNodeProcess(
      joinArgs(index, [...sync, "--storage-type", "redis", "--redis-url", redis.url]),
    );
    await pairUp(index, TOKEN, master, slave);
    expect(await admin(master.port, "set a 0 0 1\r\n1")).toBe("STORED\r\n");
    await redis.kill();
    const reply = await admin(master.port, "set b 0 0 1\r\n2");
    expect(reply).toMatch(/^SERVER_ERROR replication refused by slave localhost:\d+: SERVER_ERROR /);
    // A write the slave could not apply does not count as progress (the index promotes by it).
    const peer = await RawClient.open(slave.port);
    expect(await peer.authenticate(TOKEN, "node")).toBe("OK\r\n");
    expect(await peer.ask(`<localhost:${master.port}@999999>set z 0 0 1 77\r\nz\r\n`)).toMatch(
      /^SERVER_ERROR /,
    );
    peer.close();
    const seq = Number(/STAT replication_seq (\d+)/.exec(await admin(slave.port, "stats", "END\r\n"))?.[1]);
    expect(seq).toBeLessThan(999999);
    // Once the index has the slave down, the master writes alone again.
    await until(
      "the slave to be marked down",
      async () => (await nodeState(index, slave.port)) === "proxy/down",
    );
    await until(
      "the master to take writes alone",
      async () => (await admin(master.port, "set c 0 0 1\r\n3")) === "STORED\r\n",
    );
    await Promise.all([master.stop(), slave.stop()]);
    await index.stop();
  }, 60_000);

  it("sync mode: with the slave frozen, an HTTP PUT to the master and one through the Worker are held like a memcached set", async () => {
    const index = await startIndex(["--cluster-token", TOKEN, "--http-port", "0"]);
    const sync = ["--cluster-token", TOKEN, "--replication-type", "sync", "--http-port", "0"];
    const master = await startNodeProcess(joinArgs(index, sync));
    const slave = await startNodeProcess(joinArgs(index, sync));
    await pairUp(index, TOKEN, master, slave);
    const worker = await startWorker(`http://127.0.0.1:${index.httpPort}`);
    const put = (base: string, key: string) => fetch(`${base}/v1/kv/${key}`, { method: "PUT", body: "v" });
    const direct = `http://127.0.0.1:${master.httpPort}`;
    expect((await put(direct, "before")).status).toBe(200);
    // The Worker has its map before the slave stops.
    const warm = await put(worker.url, "before-worker");
    expect(warm.status, await warm.clone().text()).toBe(200);
    slave.proc.kill("SIGSTOP");
    await until("the slave to be stopped", async () => stopped(slave.proc.pid as number));
    const answered: string[] = [];
    const http = put(direct, "held").then((r) => answered.push(`http ${r.status}`));
    const edge = put(worker.url, "held-worker").then((r) => answered.push(`worker ${r.status}`));
    const tcp = admin(master.port, "set held-tcp 0 0 1\r\nv").then((r) => answered.push(`tcp ${r.trim()}`));
    await new Promise((r) => setTimeout(r, 1000));
    // None is acknowledged while the slave, still in the map, does not have it.
    expect(answered).toEqual([]);
    await Promise.all([http, edge, tcp]);
    expect(answered.sort()).toEqual(["http 200", "tcp STORED", "worker 200"]);
    await worker.stop();
    expect(await nodeState(index, slave.port)).toBe("proxy/down");
    slave.proc.kill("SIGCONT");
    await Promise.all([master.stop(), slave.stop()]);
    await index.stop();
  }, 60_000);
});
