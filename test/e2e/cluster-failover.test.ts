/** Real processes: an index, a master and a slave; the master dies with kill -9. */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { admin, joinArgs, peerAdmin, until } from "../helpers/cluster.js";
import { startIndexProcess, startNodeProcess, stopAll } from "../helpers/processes.js";

afterAll(stopAll);

describe("failover with real processes", () => {
  it("kill -9 of the master: the slave is promoted and stats nodes reads like the seed's listing", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "flare-index-"));
    const indexArgs = ["--data-dir", dataDir, "--monitor-interval", "1", "--monitor-threshold", "3"];
    const index = await startIndexProcess(indexArgs);
    const master = await startNodeProcess(joinArgs(index));
    const slave = await startNodeProcess(joinArgs(index));
    const m = master.port;
    const s = slave.port;

    expect(await admin(index.port, `node role localhost ${m} master 1 0`)).toBe("OK\r\n");
    expect(await admin(index.port, `node role localhost ${s} slave 2 0`)).toBe("OK\r\n");
    expect(await admin(index.port, `node state localhost ${s} active`)).toBe("OK\r\n");
    expect(await admin(index.port, `node role localhost ${s} slave 2 0`)).toBe("OK\r\n");

    // Fencing: only the master takes writes. A client's write sent to the slave is passed on to
    // the master (Flare's flared does too); a cluster peer's is refused.
    await until(
      "the master to take writes",
      async () => (await admin(m, "set k 0 0 1\r\nx")) === "STORED\r\n",
    );
    expect(await peerAdmin(s, undefined, "set k 0 0 1\r\nw")).toBe(
      "SERVER_ERROR not a master (role slave, state active)\r\n",
    );
    expect(await admin(s, "set k 0 0 1\r\nv")).toBe("STORED\r\n");
    expect(await peerAdmin(m, undefined, "get k")).toBe("VALUE k 0 1\r\nv\r\nEND\r\n");

    master.proc.kill("SIGKILL");
    const killedAt = Date.now();
    await until(
      "the slave to take writes",
      async () => (await admin(s, "set k 0 0 1\r\ny")) === "STORED\r\n",
    );
    const promotedAfter = Date.now() - killedAt;
    console.log(`failover: slave took writes ${promotedAfter} ms after kill -9`);

    const [a, b] = [m, s].sort((x, y) => (`localhost:${x}` < `localhost:${y}` ? -1 : 1));
    const expected = {
      [m]: ["role proxy", "state down", "partition -1", "balance 0"],
      [s]: ["role master", "state active", "partition 0", "balance 2"],
    };
    const listing = await admin(index.port, "stats nodes", "END\r\n");
    const lines = listing.split("\r\n");
    expect(lines.at(-2)).toBe("END");
    expect(lines.slice(0, 10)).toEqual(
      [a, b].flatMap((p) => [
        ...(expected[p as number] as string[]).map((f) => `STAT localhost:${p}:${f}`),
        `STAT localhost:${p}:thread_type ${p === m ? 16 : 17}`,
      ]),
    );
    expect(index.stderr()).toMatch(/"msg":"new master"/);
    expect(index.stderr()).toMatch(new RegExp(`"msg":"slave progress".*"localhost:${s}":\\d+`));
    // The slave's own view of the map says the same.
    expect(await admin(s, "stats nodes", "END\r\n")).toContain(`STAT localhost:${s}:role master\r\n`);
    expect(slave.stderr()).toMatch(/"msg":"role changed".*"to":"master\/active"/);

    // The old master returns: it registers again and comes back as a proxy, not as a master.
    // Same port: a node's identity is host:port (the later --server-port wins over the helper's 0).
    const returned = await startNodeProcess([...joinArgs(index), "--server-port", String(m)]);
    await until("the returned node to be active", async () =>
      (await admin(index.port, "stats nodes", "END\r\n")).includes(`STAT localhost:${m}:state active`),
    );
    expect(await admin(index.port, "stats nodes", "END\r\n")).toContain(`STAT localhost:${m}:role proxy`);
    // It holds no partition: a peer's write is refused, a client's goes to the new master.
    expect(await peerAdmin(m, undefined, "set k 0 0 1\r\nz")).toMatch(/^SERVER_ERROR not a master/);
    expect(await admin(m, "set k 0 0 1\r\nz")).toBe("STORED\r\n");
    expect(await admin(s, "get k", "END\r\n")).toBe("VALUE k 0 1\r\nz\r\nEND\r\n");
    await returned.stop();
    await slave.stop();
    await index.stop();
  });

  it("an index restarted mid-run comes back with the same map and version and resumes monitoring", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "flare-index-"));
    const indexArgs = ["--data-dir", dataDir, "--monitor-interval", "1", "--monitor-threshold", "3"];
    const index = await startIndexProcess(indexArgs);
    const master = await startNodeProcess(joinArgs(index));
    const slave = await startNodeProcess(joinArgs(index));
    await admin(index.port, `node role localhost ${master.port} master 1 0`);
    await admin(index.port, `node role localhost ${slave.port} slave 1 0`);
    await admin(index.port, `node state localhost ${slave.port} active`);
    const before = await admin(index.port, "stats nodes", "END\r\n");
    const version = /STAT node_map_version (\d+)/.exec(await admin(index.port, "stats", "END\r\n"))?.[1];

    index.proc.kill("SIGKILL");
    await new Promise((r) => index.proc.once("exit", r));
    // Nodes keep serving with their last map.
    await until(
      "the master to take writes",
      async () => (await admin(master.port, "set a 0 0 1\r\n1")) === "STORED\r\n",
    );
    expect(await admin(master.port, "get a", "END\r\n")).toBe("VALUE a 0 1\r\n1\r\nEND\r\n");

    // The index dials the nodes, not the other way round: it may come back on any port.
    const again = await startIndexProcess(indexArgs);
    expect(await admin(again.port, "stats nodes", "END\r\n")).toBe(before);
    expect(/STAT node_map_version (\d+)/.exec(await admin(again.port, "stats", "END\r\n"))?.[1]).toBe(
      version,
    );

    // Monitoring resumed: the master dies, the restarted index promotes the slave.
    master.proc.kill("SIGKILL");
    await until("the slave to be promoted", async () =>
      (await admin(again.port, "stats nodes", "END\r\n")).includes(
        `STAT localhost:${slave.port}:role master`,
      ),
    );
    await slave.stop();
    await again.stop();
  });
});
