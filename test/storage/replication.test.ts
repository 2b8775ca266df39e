/** Master -> slave replication and reconstruction with real processes. */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { admin, attachSlave, dumpOf, joinArgs, nodeState, startIndex, until } from "../helpers/cluster.js";
import { startNodeProcess, stopAll } from "../helpers/processes.js";
import { RawClient } from "../helpers/raw-client.js";

afterAll(stopAll);

/** Writes `count` keys to a node with a pipeline, and waits for every reply. */
async function writeKeys(port: number, prefix: string, count: number, from = 0): Promise<void> {
  const c = await RawClient.open(port);
  const batch = 5000;
  for (let start = from; start < from + count; start += batch) {
    let req = "";
    const n = Math.min(batch, from + count - start);
    for (let i = start; i < start + n; i++)
      req += `set ${prefix}${i} ${i % 7} 0 ${String(i).length}\r\n${i}\r\n`;
    c.send(req);
    let got = 0;
    while (got < n) got += (await c.readUntil("\r\n", 30_000)).split("STORED\r\n").length - 1;
  }
  c.close();
}

describe("replication", () => {
  it("a slave attached under load is rebuilt from the master and ends identical, key for key and version for version", async () => {
    const index = await startIndex();
    const master = await startNodeProcess(joinArgs(index));
    const slave = await startNodeProcess(joinArgs(index));
    expect(await admin(index.port, `node role localhost ${master.port} master 1 0`)).toBe("OK\r\n");
    await until(
      "the master to take writes",
      async () => (await admin(master.port, "set x 0 0 1\r\n1")) === "STORED\r\n",
    );

    await writeKeys(master.port, "k", 100_000);

    let writing = true;
    let written = 0;
    const load = (async () => {
      const c = await RawClient.open(master.port);
      for (let i = 0; writing; i++) {
        // Overwrites, new keys and deletes while the slave is being rebuilt.
        const reply = await c.ask(
          i % 5 === 4
            ? `delete k${i}\r\n`
            : `set ${i % 2 ? "k" : "live"}${i} 1 0 ${String(i).length + 1}\r\nv${i}\r\n`,
        );
        if (reply === "STORED\r\n" || reply === "DELETED\r\n" || reply === "NOT_FOUND\r\n") written++;
      }
      c.close();
    })();
    await attachSlave(index, slave, 2);
    writing = false;
    await load;
    expect(written).toBeGreaterThan(0);
    await until("replication to catch up", async () =>
      /replication_lag:\S+ 0\r\n/.test(await admin(master.port, "stats", "END\r\n")),
    );

    const [onMaster, onSlave] = await Promise.all([dumpOf(master.port), dumpOf(slave.port)]);
    expect(onMaster.size).toBeGreaterThan(100_000 - written);
    expect(onSlave.size).toBe(onMaster.size);
    console.log(
      `reconstruction: ${onMaster.size} items, ${written} writes during the rebuild, slave identical`,
    );
    let same = 0;
    for (const [key, v] of onMaster) if (onSlave.get(key) === v) same++;
    expect(same).toBe(onMaster.size);
    // The balance asked for took effect once the slave was active.
    expect(await admin(index.port, "stats nodes", "END\r\n")).toContain(
      `STAT localhost:${slave.port}:balance 2\r\n`,
    );
    expect(await nodeState(index, slave.port)).toBe("slave/active");
    // The slave knows how far it got in the master's stream (the index promotes the furthest).
    const seq = Number(/STAT replication_seq (\d+)/.exec(await admin(slave.port, "stats", "END\r\n"))?.[1]);
    expect(seq).toBeGreaterThan(0);
    await Promise.all([master.stop(), slave.stop()]);
    await index.stop();
  });

  it("an old master that returns with its disk is rebuilt identical to the new master: stale keys do not survive", async () => {
    const index = await startIndex();
    const dirA = mkdtempSync(join(tmpdir(), "flare-old-master-"));
    const leveldb = (dir: string) => ["--storage-type", "leveldb", "--data-dir", dir];
    const a = await startNodeProcess(joinArgs(index, leveldb(dirA)));
    const b = await startNodeProcess(joinArgs(index, leveldb(mkdtempSync(join(tmpdir(), "flare-b-")))));
    await admin(index.port, `node role localhost ${a.port} master 1 0`);
    await attachSlave(index, b);
    await until(
      "the master to take writes",
      async () => (await admin(a.port, "set x 0 0 1\r\n1")) === "STORED\r\n",
    );
    await writeKeys(a.port, "k", 2000);
    await until("replication to catch up", async () =>
      /replication_lag:\S+ 0\r\n/.test(await admin(a.port, "stats", "END\r\n")),
    );

    a.proc.kill("SIGKILL");
    await until("b to be promoted", async () => (await nodeState(index, b.port)) === "master/active");
    // Life goes on without A: deletes and new values it never sees.
    for (let i = 0; i < 100; i++) expect(await admin(b.port, `delete k${i}`)).toBe("DELETED\r\n");
    await writeKeys(b.port, "after", 100);

    const back = await startNodeProcess(joinArgs(index, [...leveldb(dirA), "--server-port", String(a.port)]));
    await until("A to come back as a proxy", async () => (await nodeState(index, a.port)) === "proxy/active");
    await attachSlave(index, back);
    const [onB, onA] = await Promise.all([dumpOf(b.port), dumpOf(back.port)]);
    expect(onA.has("k0")).toBe(false);
    expect(onA.size).toBe(onB.size);
    expect([...onA.entries()].sort()).toEqual([...onB.entries()].sort());
    await Promise.all([back.stop(), b.stop()]);
    await index.stop();
  });

  it("a slave that stalls under load is caught up by its master and ends identical", async () => {
    const index = await startIndex();
    const args = ["--replication-log-size", "1000"];
    const master = await startNodeProcess(joinArgs(index, args));
    const slave = await startNodeProcess(joinArgs(index, args));
    await admin(index.port, `node role localhost ${master.port} master 1 0`);
    await attachSlave(index, slave);

    let writing = true;
    const load = (async () => {
      const c = await RawClient.open(master.port);
      for (let i = 0; writing; i++) await c.ask(`set s${i % 3000} 0 0 ${String(i).length}\r\n${i}\r\n`);
      c.close();
    })();
    await new Promise((r) => setTimeout(r, 200));
    slave.proc.kill("SIGSTOP");
    await new Promise((r) => setTimeout(r, 700));
    slave.proc.kill("SIGCONT");
    await new Promise((r) => setTimeout(r, 200));
    writing = false;
    await load;
    await until("replication to catch up", async () =>
      /replication_lag:\S+ 0\r\n/.test(await admin(master.port, "stats", "END\r\n")),
    );
    const [onMaster, onSlave] = await Promise.all([dumpOf(master.port), dumpOf(slave.port)]);
    expect(onMaster.size).toBeGreaterThan(1000);
    expect([...onSlave.entries()].sort()).toEqual([...onMaster.entries()].sort());
    await Promise.all([master.stop(), slave.stop()]);
    await index.stop();
  });

  it("sync mode: after each of 10 kill -9 failovers every acknowledged write is on the new master", async () => {
    const rounds = 10;
    for (let round = 0; round < rounds; round++) {
      const index = await startIndex();
      const master = await startNodeProcess(joinArgs(index, ["--replication-type", "sync"]));
      const slave = await startNodeProcess(joinArgs(index, ["--replication-type", "sync"]));
      await admin(index.port, `node role localhost ${master.port} master 1 0`);
      await attachSlave(index, slave, 2);

      // Several writers, each with a pipeline; a write counts once its STORED came back.
      const acked: string[] = [];
      const writer = async (w: number): Promise<void> => {
        const c = await RawClient.open(master.port);
        for (let i = 0; !c.closed; i++) {
          const key = `r${round}w${w}k${i}`;
          const reply = await c.ask(`set ${key} 0 0 ${key.length}\r\n${key}\r\n`).catch(() => "");
          if (reply === "STORED\r\n") acked.push(key);
        }
      };
      const writers = [0, 1, 2, 3].map(writer);
      await new Promise((r) => setTimeout(r, 300 + round * 20));
      master.proc.kill("SIGKILL");
      await Promise.all(writers);
      await until(
        "the slave to be promoted",
        async () => (await nodeState(index, slave.port)) === "master/active",
      );

      const c = await RawClient.open(slave.port);
      let missing = 0;
      for (let i = 0; i < acked.length; i += 500) {
        const keys = acked.slice(i, i + 500);
        const out = await c.ask(`get ${keys.join(" ")}\r\n`, "END\r\n");
        for (const key of keys) if (!out.includes(`VALUE ${key} 0 ${key.length}\r\n${key}\r\n`)) missing++;
      }
      c.close();
      console.log(`sync round ${round + 1}: ${acked.length} acknowledged writes, ${missing} lost`);
      expect(acked.length).toBeGreaterThan(50);
      expect(missing, `round ${round}: ${missing} of ${acked.length} acknowledged writes lost`).toBe(0);
      await slave.stop();
      await index.stop();
    }
  });
});
