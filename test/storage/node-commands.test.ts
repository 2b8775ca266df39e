/** Byte-exact replies of the commands the npm client and memcapable do not cover. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { validateConfig } from "../../common/config.js";
import { createLogger } from "../../common/log.js";
import { nodeConfigSpec } from "../../storage/config.js";
import { type RunningNode, startNode } from "../../storage/node.js";
import { RawClient } from "../helpers/raw-client.js";

let node: RunningNode;
let c: RawClient;

beforeAll(async () => {
  node = await startNode(validateConfig(nodeConfigSpec, new Map([["server-port", "0"]])), createLogger());
  c = await RawClient.open(node.port);
});
afterAll(async () => {
  c.close();
  await node.stop();
});

describe("memcached commands over TCP", () => {
  it("gat and gats return the items with their new expiry", async () => {
    await c.ask("set a 1 0 1\r\nx\r\nset b 2 0 1\r\ny\r\n", "STORED\r\nSTORED\r\n");
    expect(await c.ask("gat 100 a missing b\r\n", "END\r\n")).toBe(
      "VALUE a 1 1\r\nx\r\nVALUE b 2 1\r\ny\r\nEND\r\n",
    );
    expect(await c.ask("gats -1 a\r\n", "END\r\n")).toBe("VALUE a 1 1 1\r\nx\r\nEND\r\n");
    expect(await c.ask("get a\r\n", "END\r\n")).toBe("END\r\n");
  });

  it("touch, ping, verbosity, noreply forms", async () => {
    expect(await c.ask("touch b 10\r\n")).toBe("TOUCHED\r\n");
    expect(await c.ask("touch nothing 10\r\n")).toBe("NOT_FOUND\r\n");
    expect(await c.ask("ping\r\n")).toBe("OK\r\n");
    expect(await c.ask("verbosity 1\r\n")).toBe("OK\r\n");
    // Silent commands, then one that answers: only its reply comes back.
    c.send(
      "set q 0 0 1 noreply\r\nz\r\ntouch q 5 noreply\r\nincr q 1 noreply\r\ndelete q noreply\r\nverbosity 1 noreply\r\n",
    );
    expect(await c.ask("get q\r\n", "END\r\n")).toBe("END\r\n");
  });

  it("set with an explicit version and delete with a version and hold (Flare), from a cluster peer", async () => {
    const peer = await RawClient.open(node.port);
    expect(await peer.authenticate()).toBe("OK\r\n");
    expect(await peer.ask("set v 0 0 1 100\r\na\r\n")).toBe("STORED\r\n");
    expect(await c.ask("gets v\r\n", "END\r\n")).toBe("VALUE v 0 1 100\r\na\r\nEND\r\n");
    expect(await peer.ask("set v 0 0 1 99\r\nb\r\n")).toBe("NOT_STORED\r\n");
    expect(await peer.ask("delete v 0 50\r\n")).toBe("NOT_FOUND\r\n");
    expect(await c.ask("delete v 5\r\n")).toBe("DELETED\r\n");
    expect(await c.ask("add v 0 0 1\r\nc\r\n")).toBe("NOT_STORED\r\n");
    expect(await c.ask("set v 0 0 1\r\nc\r\n")).toBe("STORED\r\n");
    expect(await c.ask("gets v\r\n", "END\r\n")).toBe("VALUE v 0 1 101\r\nc\r\nEND\r\n");
    peer.close();
  });

  it("takes no version from a plain client: a 6th number is ignored, as memcached ignores it", async () => {
    expect(await c.ask("set pv 0 0 1 18446744073709551615\r\nX\r\n")).toBe("STORED\r\n");
    expect(await c.ask("gets pv\r\n", "END\r\n")).toBe("VALUE pv 0 1 1\r\nX\r\nEND\r\n");
    expect(await c.ask("set pv 0 0 1\r\nY\r\n")).toBe("STORED\r\n");
    expect(await c.ask("flush_all\r\n")).toBe("OK\r\n");
    expect(await c.ask("set pv 0 0 1\r\nZ\r\n")).toBe("STORED\r\n");
    const cas = /VALUE pv 0 1 (\d+)\r\n/.exec(await c.ask("gets pv\r\n", "END\r\n"))?.[1] ?? "";
    expect(BigInt(cas)).toBeLessThan(1000n);
    expect(await c.ask(`cas pv 0 0 1 ${cas}\r\nW\r\n`)).toBe("STORED\r\n");
  });

  it("refuses a write that would take a version past 2^64-1, and keeps what was stored", async () => {
    // A node of its own: its version floor ends at the top, which would refuse later tests' writes.
    const own = await startNode(
      validateConfig(nodeConfigSpec, new Map([["server-port", "0"]])),
      createLogger(),
    );
    const c = await RawClient.open(own.port);
    const peer = await RawClient.open(own.port);
    expect(await peer.authenticate()).toBe("OK\r\n");
    expect(await peer.ask("set top 0 0 1 18446744073709551615\r\n7\r\n")).toBe("STORED\r\n");
    peer.close();
    const overflow = "SERVER_ERROR version overflow: key top is at the largest version\r\n";
    expect(await c.ask("set top 0 0 1\r\n8\r\n")).toBe(overflow);
    expect(await c.ask("incr top 1\r\n")).toBe(overflow);
    expect(await c.ask("cas top 0 0 1 18446744073709551615\r\n9\r\n")).toBe(overflow);
    expect(await c.ask("gets top\r\n", "END\r\n")).toBe("VALUE top 0 1 18446744073709551615\r\n7\r\nEND\r\n");
    expect(await c.ask("delete top\r\n")).toBe("DELETED\r\n");
    c.close();
    await own.stop();
  });

  it("stats reset, settings and the empty sub-reports", async () => {
    expect(await c.ask("stats reset\r\n")).toBe("RESET\r\n");
    expect(await c.ask("stats\r\n", "END\r\n")).toMatch(
      /STAT cmd_get 0\r\n[\s\S]*STAT limit_maxbytes \d+\r\n[\s\S]*STAT evictions 0\r\n/,
    );
    expect(await c.ask("stats items\r\n")).toBe("END\r\n");
    expect(await c.ask("stats settings\r\n", "END\r\n")).toContain("STAT item_size_max 1048576\r\n");
    expect(await c.ask("stats bogus\r\n")).toBe("ERROR\r\n");
  });

  it("Flare's stats threads and dump_key, memcached's stats conns, store_too_large and idle_kicks", async () => {
    const own = await startNode(
      validateConfig(
        nodeConfigSpec,
        new Map([
          ["server-port", "0"],
          ["net-read-timeout", "1"],
        ]),
      ),
      createLogger(),
    );
    const idle = await RawClient.open(own.port);
    const k = await RawClient.open(own.port);
    const port = (k.socket.localPort as number).toString();
    expect(await k.ask("set a 0 0 1\r\nx\r\nset b 0 0 1\r\ny\r\n", "STORED\r\nSTORED\r\n")).toBeTruthy();
    const threads = await k.ask("stats threads\r\n", "END\r\n");
    // One request thread per connection, as Flare lists them; this one's last command was stats.
    const mine = new RegExp(
      `STAT (\\d+):type 1\r\nSTAT \\1:peer 127\\.0\\.0\\.1:${port}\r\nSTAT \\1:op stats\r\nSTAT \\1:uptime \\d+\r\nSTAT \\1:state wait\r\nSTAT \\1:info \r\nSTAT \\1:queue 0\r\nSTAT \\1:behind 0\r\n`,
    );
    expect(threads).toMatch(mine);
    expect(threads.match(/:type 1\r\n/g)).toHaveLength(2);
    expect(await k.ask("stats threads request\r\n", "END\r\n")).toMatch(mine);
    expect(await k.ask("stats threads slave\r\n")).toBe("END\r\n");
    expect(await k.ask("stats threads queue\r\n", "END\r\n")).toBe("STAT total_thread_queue 0\r\nEND\r\n");
    expect(await k.ask("stats threads bogus\r\n")).toBe("ERROR\r\n");
    const conns = await k.ask("stats conns\r\n", "END\r\n");
    expect(conns).toContain(`STAT 0:addr tcp:127.0.0.1:${own.port}\r\nSTAT 0:state conn_listening\r\n`);
    expect(conns).toMatch(
      new RegExp(
        `STAT (\\d+):addr tcp:127\\.0\\.0\\.1:${port}\r\nSTAT \\1:listen_addr tcp:127\\.0\\.0\\.1:${own.port}\r\nSTAT \\1:state conn_waiting\r\nSTAT \\1:secs_since_last_cmd 0\r\n`,
      ),
    );
    // dump_key lists keys (of one partition when asked); pipelined dumps run one after another.
    let keys = await k.ask("dump_key\r\ndump_key 0 1\r\n", "END\r\n");
    if (keys.split("END\r\n").length < 3) keys += await k.readUntil("END\r\n");
    expect(keys.split("END\r\n").map((part) => part.split("\r\n").sort().join(","))).toEqual([
      ",KEY a,KEY b",
      ",KEY a,KEY b",
      "",
    ]);
    expect(await k.ask("dump_key 2 2\r\n")).toBe("ERROR\r\n");
    expect(await k.ask("dump 0\r\n")).toBe("ERROR\r\n");
    k.send(`set big 0 0 2000000 noreply\r\n${"z".repeat(2_000_000)}\r\n`);
    expect(await k.ask("get a\r\n", "END\r\n")).toBe("VALUE a 0 1\r\nx\r\nEND\r\n");
    k.close();
    expect(await idle.waitClosed(3000)).toBe("");
    const s = await RawClient.open(own.port);
    const stats = await s.ask("stats\r\n", "END\r\n");
    expect(stats).toContain("STAT store_too_large 1\r\n");
    expect(stats).toContain("STAT idle_kicks 1\r\n");
    s.close();
    await own.stop();
  });

  it("flush_all noreply empties the node", async () => {
    c.send("flush_all noreply\r\n");
    expect(await c.ask("get b\r\n", "END\r\n")).toBe("END\r\n");
  });

  it("quit closes the connection after answering what came before it", async () => {
    const q = await RawClient.open(node.port);
    q.send("set w 0 0 1\r\nw\r\nquit\r\nget w\r\n");
    expect(await q.waitClosed()).toBe("STORED\r\n");
  });
});
