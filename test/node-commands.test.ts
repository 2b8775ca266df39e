/** Byte-exact replies of the commands the npm client and memcapable do not cover. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { validateConfig } from "../common/config.js";
import { createLogger } from "../common/log.js";
import { nodeConfigSpec } from "../storage/config.js";
import { type RunningNode, startNode } from "../storage/node.js";
import { RawClient } from "./helpers/raw-client.js";

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
