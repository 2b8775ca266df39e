/**
 * Any node answers any key: with two partitions, a client that talks to one node only (a master,
 * a slave, or a node with no partition) gets every key's answer as the owner would give it, and
 * its writes land on the owner and the owner's slave. What a cluster peer sends is never passed on.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keyHash, partitioning } from "../../protocol/key-hash.js";
import { admin, joinArgs, nodeState, pairUp, peerAdmin, startIndex, until } from "../helpers/cluster.js";
import { type NodeProcess, startNodeProcess, stopAll } from "../helpers/processes.js";
import { RawClient } from "../helpers/raw-client.js";

afterAll(stopAll);

const keys = partitioning(new Map());
const partitionOf = (key: string): number => keys.resolver.resolve(keyHash(key, keys.algorithm), 2);

const TOKEN = "any-node-secret";
let master0: NodeProcess;
let slave0: NodeProcess;
let master1: NodeProcess;
let spare: NodeProcess;

/** `count` keys of each partition, named `prefix<i>`. */
function keysOf(prefix: string, count: number): [string[], string[]] {
  const found: [string[], string[]] = [[], []];
  for (let i = 0; found[0].length < count || found[1].length < count; i++) {
    const key = `${prefix}${i}`;
    const list = found[partitionOf(key)] as string[];
    if (list.length < count) list.push(key);
  }
  return found;
}

/** What the node holds itself: asked as a cluster peer, whose requests are never passed on. */
async function localGet(node: NodeProcess, key: string): Promise<string> {
  const c = await RawClient.open(node.port);
  try {
    expect(await c.authenticate(TOKEN)).toBe("OK\r\n");
    return await c.ask(`get ${key}\r\n`, "END\r\n");
  } finally {
    c.close();
  }
}

beforeAll(async () => {
  const secret = ["--cluster-token", TOKEN];
  const index = await startIndex(secret);
  const nodeArgs = joinArgs(index, [...secret, "--replication-type", "sync", "--http-port", "0"]);
  [master0, slave0, master1, spare] = await Promise.all([0, 1, 2, 3].map(() => startNodeProcess(nodeArgs)));
  await pairUp(index, TOKEN, master0, slave0);
  expect(await peerAdmin(index.port, TOKEN, `node role localhost ${master1.port} master 1 1`)).toBe("OK\r\n");
  await until(
    "partition 1 to be active",
    async () => (await nodeState(index, master1.port)) === "master/active",
  );
  // Every node has the two-partition map before the checks start.
  for (const n of [master0, slave0, master1, spare])
    await until("the map to reach every node", async () =>
      (await peerAdmin(n.port, TOKEN, "stats nodes")).includes(`localhost:${master1.port}:state active`),
    );
}, 60_000);

describe("any node answers any key", () => {
  it("writes through one node land on each key's owner and its slave; reads through every node agree", async () => {
    const [mine, theirs] = keysOf("an_", 100);
    const all = [...mine, ...theirs];
    // One client, one node (partition 0's master): half the keys belong to partition 1.
    const c = await RawClient.open(master0.port);
    for (const key of all)
      expect(await c.ask(`set ${key} 7 0 ${key.length + 2}\r\nv-${key}\r\n`)).toBe("STORED\r\n");
    c.close();
    // Each key on its owner (and partition 0's on its slave), and not on the other partition.
    for (const key of mine) {
      const want = `VALUE ${key} 7 ${key.length + 2}\r\nv-${key}\r\nEND\r\n`;
      expect(await localGet(master0, key)).toBe(want);
      expect(await localGet(slave0, key)).toBe(want);
      expect(await localGet(master1, key)).toBe("END\r\n");
    }
    for (const key of theirs) {
      expect(await localGet(master1, key)).toBe(`VALUE ${key} 7 ${key.length + 2}\r\nv-${key}\r\nEND\r\n`);
      expect(await localGet(master0, key)).toBe("END\r\n");
      expect(await localGet(slave0, key)).toBe("END\r\n");
    }
    // A multi-get of all of them, through each node: every value, in the order asked.
    const want = `${all.map((k) => `VALUE ${k} 7 ${k.length + 2}\r\nv-${k}\r\n`).join("")}END\r\n`;
    for (const node of [master0, slave0, master1, spare]) {
      const r = await RawClient.open(node.port);
      expect(await r.ask(`get ${all.join(" ")}\r\n`, "END\r\n")).toBe(want);
      r.close();
    }
  });

  it("every keyed command through a node that does not own the key answers as the owner does", async () => {
    const [, theirs] = keysOf("cmd_", 3);
    const [k1, k2, k3] = theirs as [string, string, string];
    const c = await RawClient.open(master0.port);
    const ask = (line: string, end = "\r\n") => c.ask(line, end);
    expect(await ask(`set ${k1} 1 0 2\r\n10\r\n`)).toBe("STORED\r\n");
    expect(await ask(`add ${k1} 0 0 1\r\nx\r\n`)).toBe("NOT_STORED\r\n");
    expect(await ask(`append ${k1} 0 0 1\r\n5\r\n`)).toBe("STORED\r\n");
    expect(await ask(`prepend ${k1} 0 0 1\r\n2\r\n`)).toBe("STORED\r\n");
    expect(await ask(`incr ${k1} 5\r\n`)).toBe("2110\r\n");
    expect(await ask(`decr ${k1} 10\r\n`)).toBe("2100\r\n");
    const gets = await ask(`gets ${k1}\r\n`, "END\r\n");
    const cas = /^VALUE \S+ 1 4 (\d+)\r\n2100\r\nEND\r\n$/.exec(gets)?.[1];
    expect(cas, gets).toBeDefined();
    expect(await ask(`cas ${k1} 3 0 1 ${cas}\r\nz\r\n`)).toBe("STORED\r\n");
    expect(await ask(`cas ${k1} 3 0 1 ${cas}\r\ny\r\n`)).toBe("EXISTS\r\n");
    expect(await ask(`touch ${k1} 100\r\n`)).toBe("TOUCHED\r\n");
    expect(await ask(`gat 200 ${k1}\r\n`, "END\r\n")).toBe(`VALUE ${k1} 3 1\r\nz\r\nEND\r\n`);
    expect(await ask(`replace ${k2} 0 0 1\r\nq\r\n`)).toBe("NOT_STORED\r\n");
    expect(await ask(`delete ${k2}\r\n`)).toBe("NOT_FOUND\r\n");
    // noreply: nothing comes back, and the write is there for the next read on the connection.
    c.send(`set ${k3} 0 0 2 noreply\r\nnr\r\n`);
    expect(await ask(`get ${k3}\r\n`, "END\r\n")).toBe(`VALUE ${k3} 0 2\r\nnr\r\nEND\r\n`);
    expect(await ask(`delete ${k3}\r\n`)).toBe("DELETED\r\n");
    expect(await ask(`get ${k3}\r\n`, "END\r\n")).toBe("END\r\n");
    c.close();
    // The owner and its record agree with what the client saw.
    expect(await localGet(master1, k1)).toBe(`VALUE ${k1} 3 1\r\nz\r\nEND\r\n`);
    expect(await localGet(master1, k3)).toBe("END\r\n");
  });

  it("values of every byte, up to item-size-max, pass through unchanged; a larger one is refused as the owner would", async () => {
    const [mine, theirs] = keysOf("big_", 2);
    const big = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >> 8)) & 255;
    const c = await RawClient.open(spare.port);
    for (const key of [mine[0], theirs[0]] as string[]) {
      c.send(Buffer.concat([Buffer.from(`set ${key} 9 0 ${big.length}\r\n`), big, Buffer.from("\r\n")]));
      expect(await c.readUntil("\r\n", 10_000)).toBe("STORED\r\n");
      const reply = Buffer.from(await c.ask(`get ${key}\r\n`, "END\r\n"), "latin1");
      const header = Buffer.from(`VALUE ${key} 9 ${big.length}\r\n`);
      expect(reply.subarray(0, header.length).equals(header)).toBe(true);
      expect(reply.subarray(header.length, header.length + big.length).equals(big)).toBe(true);
      expect(reply.length).toBe(header.length + big.length + 7);
    }
    const tooBig = big.length + 1;
    c.send(
      Buffer.concat([
        Buffer.from(`set ${theirs[1]} 0 0 ${tooBig}\r\n`),
        Buffer.alloc(tooBig, 120),
        Buffer.from("\r\n"),
      ]),
    );
    expect(await c.readUntil("\r\n", 10_000)).toBe("SERVER_ERROR object too large for cache\r\n");
    expect(await c.ask("version\r\n")).toMatch(/^VERSION /);
    c.close();
  });

  it("a pipeline mixing keys the node owns and keys it passes on is answered in order", async () => {
    const [mine, theirs] = keysOf("pipe_", 40);
    const c = await RawClient.open(master0.port);
    for (const a of mine) expect(await c.ask(`set ${a} 0 0 1\r\n-\r\n`)).toBe("STORED\r\n");
    let request = "";
    let expected = "";
    for (let i = 0; i < 40; i++) {
      const a = mine[i] as string;
      const b = theirs[i] as string;
      const va = `VALUE ${a} 0 ${String(i).length + 1}\r\n${i}x\r\n`;
      const vb = `VALUE ${b} 0 1\r\n${i % 10}\r\n`;
      request += `set ${b} 0 0 1\r\n${i % 10}\r\nget ${a} ${b}\r\nset ${a} 0 0 ${String(i).length + 1}\r\n${i}x\r\nget ${b}\r\nget ${a}\r\n`;
      // `get a b` comes before this round's set of a: it sees a's first value.
      expected += `STORED\r\nVALUE ${a} 0 1\r\n-\r\n${vb}END\r\nSTORED\r\n${vb}END\r\n${va}END\r\n`;
    }
    c.send(request);
    let got = "";
    while (got.split("END\r\n").length - 1 < 120) got += await c.readUntil("END\r\n", 10_000);
    c.close();
    expect(got).toBe(expected);
  });

  it("a write sent to a slave or to a node with no partition reaches the master", async () => {
    const [mine, theirs] = keysOf("via_", 1);
    for (const [node, key] of [
      [slave0, mine[0]],
      [spare, theirs[0]],
      [slave0, theirs[0]],
    ] as [NodeProcess, string][]) {
      expect(await admin(node.port, `set ${key} 0 0 ${node.port.toString().length}\r\n${node.port}`)).toBe(
        "STORED\r\n",
      );
      const owner = partitionOf(key) === 0 ? master0 : master1;
      expect(await localGet(owner, key)).toBe(
        `VALUE ${key} 0 ${node.port.toString().length}\r\n${node.port}\r\nEND\r\n`,
      );
    }
    // Replicated from partition 0's master back to the slave that passed the write on.
    expect(await localGet(slave0, mine[0] as string)).toBe(
      `VALUE ${mine[0]} 0 ${slave0.port.toString().length}\r\n${slave0.port}\r\nEND\r\n`,
    );
  });

  it("over HTTP too: each node's key API answers every key as its owner does", async () => {
    const [, theirs] = keysOf("http_", 2);
    const [k1, k2] = theirs as [string, string];
    const url = (node: NodeProcess, key: string, rest = "") =>
      `http://127.0.0.1:${node.httpPort}/v1/kv/${key}${rest}`;
    const put = await fetch(url(master0, k1), {
      method: "PUT",
      body: "41",
      headers: { "X-Flare-Flags": "3" },
    });
    expect(put.status).toBe(200);
    const version = put.headers.get("ETag");
    for (const node of [master0, slave0, spare]) {
      const got = await fetch(url(node, k1));
      expect([
        got.status,
        await got.text(),
        got.headers.get("ETag"),
        got.headers.get("X-Flare-Flags"),
      ]).toEqual([200, "41", version, "3"]);
    }
    const incr = await fetch(url(slave0, k1, "/incr"), { method: "POST", body: "1" });
    expect(await incr.json()).toEqual({ value: "42" });
    expect(await localGet(master1, k1)).toBe(`VALUE ${k1} 3 2\r\n42\r\nEND\r\n`);
    // Conditional requests reach the owner with their headers.
    const stale = await fetch(url(spare, k1), {
      method: "PUT",
      body: "x",
      headers: { "If-Match": version ?? "" },
    });
    expect(stale.status).toBe(412);
    await stale.body?.cancel();
    expect((await fetch(url(spare, k1), { method: "DELETE" })).status).toBe(204);
    expect((await fetch(url(master0, k1))).status).toBe(404);
    // A request marked as passed on is answered by the node it reached: here, a refusal.
    const marked = await fetch(url(master0, k2), {
      method: "PUT",
      body: "m",
      headers: { "X-Flare-Passed-On": "x" },
    });
    expect(marked.status).toBe(503);
    expect(((await marked.json()) as { error: { code: string } }).error.code).toBe("NOT_MASTER");
    expect(await localGet(master1, k2)).toBe("END\r\n");
  });

  it("a cluster peer's request is answered where it lands: a key owned elsewhere is refused, not passed on", async () => {
    const [, theirs] = keysOf("peer_", 1);
    const key = theirs[0] as string;
    expect(await peerAdmin(master0.port, TOKEN, `set ${key} 0 0 1\r\nx`)).toBe(
      "SERVER_ERROR not a master (the key belongs to another partition)\r\n",
    );
    expect(await peerAdmin(spare.port, TOKEN, `set ${key} 0 0 1\r\nx`)).toMatch(/^SERVER_ERROR not a master/);
    expect(await localGet(master1, key)).toBe("END\r\n");
  });
});
