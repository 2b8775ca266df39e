/**
 * The trust boundary with real processes: what a plain client on 127.0.0.1 may send to every port
 * of the seed's layout, byte for byte as an attacker would, and that none of it changes a map, a
 * role, a version or a replica. Token mode and open mode alike where it concerns data ports.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { admin, nodeState, peerAdmin, type SeedLayout, seedLayout, until } from "../helpers/cluster.js";
import { runFlare, startNodeProcess, stopAll } from "../helpers/processes.js";
import { RawClient } from "../helpers/raw-client.js";

afterAll(stopAll);

const TOKEN = "trust-test-secret-0123456789";
const FORGED_MAP = "node sync 999999\r\nNODE 127.0.0.1 1 master active 0 1 0\r\nEND\r\n";

async function statValue(port: number, name: string): Promise<string | undefined> {
  const stats = await admin(port, "stats", "END\r\n");
  return new RegExp(`STAT ${name} (\\S+)\r\n`).exec(stats)?.[1];
}

async function casOf(port: number, key: string): Promise<bigint | undefined> {
  const reply = await admin(port, `gets ${key}`, "END\r\n");
  const cas = new RegExp(`^VALUE ${key} \\d+ \\d+ (\\d+)\r\n`).exec(reply)?.[1];
  return cas === undefined ? undefined : BigInt(cas);
}

describe.each([
  ["token mode", TOKEN],
  ["open mode", undefined],
])("%s: a plain client on a data port", (_mode, token) => {
  let c: SeedLayout;
  beforeAll(async () => {
    c = await seedLayout(token, ["--replication-type", "sync"]);
  }, 60_000);
  afterAll(async () => c?.stop());

  it("cannot push a node map to a node or to the proxy: ERROR per line, and the index's maps still land", async () => {
    for (const port of [c.master.port, c.slave.port, c.proxy.port]) {
      const before = await statValue(port, "node_map_version");
      expect(before).toBeDefined();
      expect(await admin(port, FORGED_MAP.trimEnd(), "ERROR\r\nERROR\r\nERROR\r\n")).toBe(
        "ERROR\r\nERROR\r\nERROR\r\n",
      );
      expect(await statValue(port, "node_map_version")).toBe(before);
    }
    // Writes through the proxy still reach the master, and the index's next map reaches everyone.
    expect(await admin(c.proxy.port, "set after-forgery 0 0 2\r\nok")).toBe("STORED\r\n");
    await c.change(`node role localhost ${c.slave.port} slave 3 0`);
    for (const port of [c.master.port, c.slave.port, c.proxy.port]) {
      await until("the index's map to reach every role", async () =>
        (await admin(port, "stats nodes", "END\r\n")).includes(
          `STAT localhost:${c.slave.port}:balance 3\r\n`,
        ),
      );
    }
    await c.change(`node role localhost ${c.slave.port} slave 2 0`);
  });

  it("cannot set a version: a 6th number is ignored on the node and through the proxy", async () => {
    for (const port of [c.proxy.port, c.master.port]) {
      expect(await admin(port, "set vk 0 0 1 18446744073709551615\r\nX")).toBe("STORED\r\n");
      const cas = await casOf(c.master.port, "vk");
      expect(cas).toBeDefined();
      expect(cas as bigint).toBeLessThan(1_000_000n);
    }
    expect(await admin(c.proxy.port, "set vk 0 0 1\r\nY")).toBe("STORED\r\n");
    expect(await admin(c.proxy.port, "flush_all")).toBe("OK\r\n");
    // After a flush versions go on from the highest ever handed out, which stayed small: cas works,
    // and the slave takes every replicated write (sync mode answers only once it has).
    for (let i = 0; i < 10; i++) {
      expect(await admin(c.proxy.port, `set after-flush-${i} 0 0 1\r\n${i}`)).toBe("STORED\r\n");
      expect(await admin(c.slave.port, `get after-flush-${i}`, "END\r\n")).toBe(
        `VALUE after-flush-${i} 0 1\r\n${i}\r\nEND\r\n`,
      );
    }
    const cas = (await casOf(c.master.port, "after-flush-0")) as bigint;
    expect(cas).toBeLessThan(1_000_000n);
    expect(await admin(c.proxy.port, `cas after-flush-0 0 0 1 ${cas}\r\nZ`)).toBe("STORED\r\n");
    expect(c.master.stderr()).not.toContain("replication refused");
  });

  it("cannot write to a slave with a replication prefix: ERROR, and no replica has the key", async () => {
    for (const port of [c.slave.port, c.master.port, c.proxy.port]) {
      expect(await admin(port, "<127.0.0.1:1@1>set victim 0 0 8\r\nAAAAAAAA", "ERROR\r\nERROR\r\n")).toBe(
        "ERROR\r\nERROR\r\n",
      );
    }
    for (const port of [c.slave.port, c.master.port, c.proxy.port])
      expect(await admin(port, "get victim", "END\r\n")).toBe("END\r\n");
    expect(await nodeState(c.index, c.slave.port)).toBe("slave/active");
  });

  it("cannot dump a node, and a made-up proof is refused", async () => {
    expect(await admin(c.master.port, "dump")).toBe("ERROR\r\n");
    const raw = await RawClient.open(c.master.port);
    expect(await raw.ask("cluster hello\r\n")).toMatch(/^CHALLENGE [0-9a-f]{32}\r\n$/);
    if (token !== undefined) {
      raw.send(`cluster auth node 00112233445566778899aabbccddeeff ${"0".repeat(64)}\r\ndump\r\n`);
      expect(await raw.waitClosed()).toBe("CLIENT_ERROR cluster authentication failed\r\n");
    }
    raw.close();
  });
});

describe("token mode: the index's text port", () => {
  let c: SeedLayout;
  beforeAll(async () => {
    c = await seedLayout(TOKEN);
  }, 60_000);
  afterAll(async () => c?.stop());

  it("refuses every change from a connection without the token, and the map stays as it was", async () => {
    const before = await admin(c.index.port, "stats nodes", "END\r\n");
    const refused = "SERVER_ERROR unauthenticated: changes need the cluster-token (cluster auth)\r\n";
    for (const line of [
      `node state localhost ${c.master.port} down`,
      "node add localhost 1",
      "node role localhost 1 slave 1 0",
      "node state localhost 1 active",
      `node role localhost ${c.slave.port} proxy`,
      `node remove localhost ${c.slave.port}`,
      `shutdown localhost ${c.master.port}`,
    ])
      expect(await admin(c.index.port, line), line).toBe(refused);
    // A peer with the wrong secret is cut off at its proof.
    const wrong = await RawClient.open(c.index.port);
    const challenge = await wrong.authenticate("not-the-token");
    expect(challenge).toBe("CLIENT_ERROR cluster authentication failed\r\n");
    expect(wrong.closed || (await wrong.waitClosed()) === "").toBe(true);
    // Over HTTP too: changes need the token as a Bearer token.
    const http = `http://127.0.0.1:${c.index.httpPort}/v1/nodes/localhost/${c.master.port}/state`;
    const res = await fetch(http, { method: "POST", body: JSON.stringify({ state: "down" }) });
    expect(res.status).toBe(401);
    await new Promise((r) => setTimeout(r, 1500));
    expect(await admin(c.index.port, "stats nodes", "END\r\n")).toBe(before);
    expect(c.index.stderr()).not.toMatch(/"msg":"node down"/);
    // The same change from a peer with the token is taken (the refusals above were about trust).
    expect(await peerAdmin(c.index.port, TOKEN, `node role localhost ${c.slave.port} slave 1 0`)).toBe(
      "OK\r\n",
    );
  });

  it("a node with the wrong token cannot join", async () => {
    const { code, stderr } = await runFlare([
      "node",
      "--server-port",
      "0",
      "--index-server-name",
      "127.0.0.1",
      "--index-server-port",
      String(c.index.port),
      "--index-register-timeout",
      "1",
      "--cluster-token",
      "wrong",
    ]);
    expect(code).not.toBe(0);
    expect(stderr).toMatch(/cluster authentication refused/);
  });
});

describe("open mode", () => {
  it("says so loudly at start, and will not bind a public address unless allowed", async () => {
    const { code, stderr } = await runFlare(["node", "--server-port", "0", "--bind-address", "0.0.0.0"]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/bind-address: 0\.0\.0\.0 is not loopback and no cluster-token is set/);
    const node = await startNodeProcess();
    expect(node.stderr().match(/OPEN MODE/g)).toHaveLength(1);
    await node.stop();
    const secured = await startNodeProcess(["--cluster-token", TOKEN]);
    expect(secured.stderr()).not.toContain("OPEN MODE");
    await secured.stop();
  });
});
