/**
 * The seed scenario (shared/seed-scenario.md) with real processes: index (monitor-interval 1,
 * monitor-threshold 3), master (balance 1), slave (balance 2), proxy; a set loop and a get loop of
 * 20-byte values through the proxy's memcached front; kill -9 of the master mid-loop.
 */
import { afterAll, describe, expect, it } from "vitest";
import { admin, attachSlave, joinArgs, nodeState, startIndex, until } from "./helpers/cluster.js";
import { type NodeProcess, startNodeProcess, startRole, stopAll } from "./helpers/processes.js";
import { RawClient } from "./helpers/raw-client.js";

afterAll(stopAll);

const value = (i: number) => `v${String(i).padStart(19, "0")}`;

describe("the seed scenario through the proxy", () => {
  it("kill -9 of the master: every set succeeds, every get returns its value", async () => {
    const index = await startIndex();
    const sync = ["--replication-type", "sync"];
    const master = await startNodeProcess(joinArgs(index, sync));
    const slave = await startNodeProcess(joinArgs(index, sync));
    await admin(index.port, `node role localhost ${master.port} master 1 0`);
    await attachSlave(index, slave, 2);
    const proxy: NodeProcess = await startRole("proxy", "proxy started", joinArgs(index));
    await until("the proxy to know the map", async () =>
      (await admin(proxy.port, "stats", "END\r\n")).includes("STAT node_map_version"),
    );
    expect(await nodeState(index, proxy.port)).toBe("proxy/active");

    let running = true;
    let acked = 0;
    const failures: string[] = [];
    let setStall = 0;
    let getStall = 0;
    let gets = 0;
    const setLoop = (async () => {
      const c = await RawClient.open(proxy.port);
      for (let i = 0; running; i++) {
        const t0 = performance.now();
        const reply = await c.ask(`set key_${i} 0 0 20\r\n${value(i)}\r\n`, "\r\n");
        setStall = Math.max(setStall, performance.now() - t0);
        if (reply === "STORED\r\n") acked = i + 1;
        else failures.push(`set key_${i}: ${reply.trim()}`);
      }
      c.close();
    })();
    const getLoop = (async () => {
      const c = await RawClient.open(proxy.port);
      while (running) {
        if (acked === 0) {
          await new Promise((r) => setTimeout(r, 5));
          continue;
        }
        const i = Math.floor(Math.random() * acked);
        const t0 = performance.now();
        const reply = await c.ask(`get key_${i}\r\n`, "END\r\n");
        getStall = Math.max(getStall, performance.now() - t0);
        gets++;
        if (reply !== `VALUE key_${i} 0 20\r\n${value(i)}\r\nEND\r\n`)
          failures.push(`get key_${i}: ${JSON.stringify(reply)}`);
      }
      c.close();
    })();

    await new Promise((r) => setTimeout(r, 1000));
    const before = acked;
    master.proc.kill("SIGKILL");
    await until(
      "the slave to be promoted",
      async () => (await nodeState(index, slave.port)) === "master/active",
    );
    await new Promise((r) => setTimeout(r, 1500));
    running = false;
    await Promise.all([setLoop, getLoop]);

    console.log(
      `seed scenario: ${acked} sets (${acked - before} after the kill), ${gets} gets; longest set stall ${Math.round(setStall)} ms, longest get stall ${Math.round(getStall)} ms`,
    );
    expect(failures).toEqual([]);
    expect(acked - before).toBeGreaterThan(100);
    expect(gets).toBeGreaterThan(100);
    expect(await admin(index.port, "stats nodes", "END\r\n")).toContain(
      `STAT localhost:${master.port}:state down`,
    );
  });
});
