import { describe, expect, it } from "vitest";
import type { NodeEntry } from "../../protocol/node-map.js";
import { type MapFeed, ProxyFailure, readFromReplicas, writeToMaster } from "../../proxy/failover.js";
import { Router } from "../../proxy/router.js";
import { type Transport, TransportError } from "../../proxy/transports/transport.js";

const node = (port: number, role: NodeEntry["role"], state: NodeEntry["state"] = "active"): NodeEntry => ({
  host: "localhost",
  port,
  role,
  state,
  partition: 0,
  balance: 1,
  threadType: port,
});

/** Nodes by port: a reply, or unreachable. The rules are pure; this stands in for the wire. */
function scripted(answers: Map<number, string | "down">): Transport<string, string> & { asked: number[] } {
  const asked: number[] = [];
  return {
    asked,
    async request(n, req) {
      asked.push(n.port);
      const a = answers.get(n.port);
      if (a === "down" || a === undefined) throw new TransportError(`localhost:${n.port}`, "refused");
      return `${a}:${req}`;
    },
  };
}

describe("failover rules (shared by the Node proxy and the Worker)", () => {
  it("a read that fails on one replica is tried on the others at once; each failure is reported", async () => {
    const router = new Router();
    router.update([node(1, "master"), node(2, "slave"), node(3, "slave")]);
    const t = scripted(
      new Map([
        [1, "down"],
        [2, "refused"],
        [3, "ok"],
      ]),
    );
    const unreachable: number[] = [];
    const refused: number[] = [];
    const hooks = {
      unreachable: (n: NodeEntry) => unreachable.push(n.port),
      refused: (n: NodeEntry) => refused.push(n.port),
    };
    for (let i = 0; i < 20; i++) {
      expect(await readFromReplicas(router, t, "k", "get", (r) => r.startsWith("refused"), hooks)).toBe(
        "ok:get",
      );
    }
    expect(new Set(unreachable)).toEqual(new Set([1]));
    expect(new Set(refused)).toEqual(new Set([2]));
    const none = scripted(
      new Map([
        [1, "down"],
        [2, "down"],
        [3, "down"],
      ]),
    );
    await expect(readFromReplicas(router, none, "k", "get", () => false, hooks)).rejects.toThrow(
      ProxyFailure,
    );
    expect(none.asked.sort()).toEqual([1, 2, 3]);
  });

  it("a write to a dead master waits for the map that names the new one, then lands there", async () => {
    const router = new Router();
    router.update([node(1, "master"), node(2, "slave")]);
    const t = scripted(
      new Map([
        [1, "down"],
        [2, "STORED"],
      ]),
    );
    let version = 5;
    const maps: MapFeed = {
      get version() {
        return version;
      },
      async newerThan(v) {
        // The index promotes the slave while the write waits.
        await new Promise((r) => setTimeout(r, 20));
        router.update([node(1, "proxy", "down"), node(2, "master")]);
        version = v + 1;
        return true;
      },
    };
    const suspects: number[] = [];
    const reply = await writeToMaster(
      router,
      t,
      maps,
      "k",
      "set",
      (r) => r.startsWith("not a master"),
      { unreachable: (n) => suspects.push(n.port) },
      Date.now() + 1000,
    );
    expect(reply).toBe("STORED:set");
    expect(t.asked).toEqual([1, 2]);
    expect(suspects).toEqual([1]);
  });

  it("a write whose failover does not finish by the deadline fails with a clear error", async () => {
    const router = new Router();
    router.update([node(1, "master")]);
    const maps: MapFeed = { version: 1, newerThan: async () => false };
    await expect(
      writeToMaster(
        router,
        scripted(new Map()),
        maps,
        "k",
        "set",
        () => false,
        { unreachable: () => {} },
        Date.now(),
      ),
    ).rejects.toThrow(/failover did not finish in time/);
  });
});
