/** Every transition of flare-notes §3.2–3.4 on the pure node map. */
import { describe, expect, it } from "vitest";
import { NodeMap } from "../../index/node-map.js";
import { nodeLine, parseNodeLine, statsNodesLines } from "../../protocol/node-map.js";

const H = "localhost";

/** The seed's layout: 11211 master (balance 1), 11212 slave (balance 2), 11213 proxy. */
function seed(): NodeMap {
  const m = new NodeMap();
  for (const p of [11211, 11212, 11213]) expect(m.add(H, p).ok).toBe(true);
  expect(m.setRole(H, 11211, "master", 1, 0)).toMatchObject({ ok: true });
  expect(m.setRole(H, 11212, "slave", 2, 0)).toMatchObject({ ok: true });
  expect(m.up(H, 11212)).toMatchObject({ ok: true }); // reconstruction finished
  expect(m.setRole(H, 11212, "slave", 2, 0)).toMatchObject({ ok: true });
  return m;
}

const brief = (m: NodeMap, port: number) => {
  const n = m.get(H, port);
  return n && `${n.role}/${n.state}/${n.partition}/${n.balance}`;
};

describe("node map", () => {
  it("a new node joins as an active proxy with the next thread type; every change bumps the version", () => {
    const m = new NodeMap();
    expect(m.add(H, 1)).toMatchObject({ ok: true, changed: true });
    expect(m.add(H, 2)).toMatchObject({ ok: true, changed: true });
    expect(m.get(H, 1)).toMatchObject({
      role: "proxy",
      state: "active",
      partition: -1,
      balance: 0,
      threadType: 16,
    });
    expect(m.get(H, 2)?.threadType).toBe(17);
    expect(m.version).toBe(2);
    expect(m.add(H, 1)).toEqual({ ok: false, error: "node localhost:1 is already active" });
    expect(m.version).toBe(2);
  });

  it("the seed layout prints as the seed's stats nodes", () => {
    const m = seed();
    expect(statsNodesLines(m.list())).toEqual([
      "STAT localhost:11211:role master",
      "STAT localhost:11211:state active",
      "STAT localhost:11211:partition 0",
      "STAT localhost:11211:balance 1",
      "STAT localhost:11211:thread_type 16",
      "STAT localhost:11212:role slave",
      "STAT localhost:11212:state active",
      "STAT localhost:11212:partition 0",
      "STAT localhost:11212:balance 2",
      "STAT localhost:11212:thread_type 17",
      "STAT localhost:11213:role proxy",
      "STAT localhost:11213:state active",
      "STAT localhost:11213:partition -1",
      "STAT localhost:11213:balance 0",
      "STAT localhost:11213:thread_type 18",
    ]);
  });

  it("a dead master hands its partition to the active slave with the highest balance", () => {
    const m = seed();
    const v = m.version;
    const change = m.down(H, 11211);
    expect(change).toMatchObject({ ok: true, promoted: "localhost:11212" });
    expect(brief(m, 11211)).toBe("proxy/down/-1/0");
    expect(brief(m, 11212)).toBe("master/active/0/2");
    expect(m.version).toBe(v + 1);
    expect(m.down(H, 11211)).toEqual({ ok: true, changed: false, events: [] });
  });

  it("ties go to the smallest key; all-zero slave balances give the new master balance 1", () => {
    const m = new NodeMap();
    for (const p of [1, 3, 2]) m.add(H, p);
    m.setRole(H, 1, "master", 1, 0);
    m.setRole(H, 3, "slave", 0, 0);
    m.setRole(H, 2, "slave", 0, 0);
    m.up(H, 3);
    m.up(H, 2);
    expect(m.down(H, 1)).toMatchObject({ promoted: "localhost:2" });
    expect(brief(m, 2)).toBe("master/active/0/1");
  });

  it("the slave that applied the most of the master's writes wins over balance", () => {
    const m = new NodeMap();
    for (const p of [1, 2, 3]) m.add(H, p);
    m.setRole(H, 1, "master", 1, 0);
    m.setRole(H, 2, "slave", 5, 0);
    m.setRole(H, 3, "slave", 1, 0);
    m.up(H, 2);
    m.up(H, 3);
    const applied = new Map([
      ["localhost:2", 10],
      ["localhost:3", 12],
    ]);
    expect(m.down(H, 1, applied)).toMatchObject({ promoted: "localhost:3" });
  });

  it("a master without an active slave keeps its role and partition while down", () => {
    const m = new NodeMap();
    m.add(H, 1);
    m.setRole(H, 1, "master", 1, 0);
    expect(m.down(H, 1)).toMatchObject({ ok: true });
    expect(brief(m, 1)).toBe("master/down/0/1");
    expect(m.remove(H, 1)).toMatchObject({ ok: false });
    // Back alone in its partition, it is master again.
    expect(m.up(H, 1)).toMatchObject({ ok: true });
    expect(brief(m, 1)).toBe("master/active/0/1");
    // A preparing slave cannot take over, and a master coming back beside it returns as a proxy.
    m.add(H, 2);
    m.setRole(H, 2, "slave", 0, 0);
    m.down(H, 1);
    expect(brief(m, 1)).toBe("master/down/0/1");
    m.up(H, 1);
    expect(brief(m, 1)).toBe("proxy/active/-1/0");
  });

  it("a returning node comes back as an active proxy", () => {
    const m = seed();
    m.down(H, 11211);
    expect(m.up(H, 11211)).toMatchObject({ ok: true });
    expect(brief(m, 11211)).toBe("proxy/active/-1/0");
    m.down(H, 11213);
    expect(m.up(H, 11213)).toMatchObject({ ok: true });
    expect(brief(m, 11213)).toBe("proxy/active/-1/0");
  });

  it("proxy -> master: partition 0 is active at once, the next partition prepares, others are refused", () => {
    const m = new NodeMap();
    for (const p of [1, 2, 3]) m.add(H, p);
    expect(m.setRole(H, 1, "master", 0, 0)).toMatchObject({ ok: false });
    expect(m.setRole(H, 1, "master", 1, 5)).toMatchObject({ ok: false });
    expect(m.setRole(H, 1, "master", 1, 0)).toMatchObject({ ok: true });
    expect(brief(m, 1)).toBe("master/active/0/1");
    expect(m.setRole(H, 2, "master", 1, 1)).toMatchObject({ ok: true });
    expect(brief(m, 2)).toBe("master/prepare/1/1");
    expect(m.setState(H, 2, "active")).toMatchObject({ ok: false });
    expect(m.setState(H, 2, "ready")).toMatchObject({ ok: true });
    expect(m.setState(H, 2, "active")).toMatchObject({ ok: true });
    expect(brief(m, 2)).toBe("master/active/1/1");
  });

  it("proxy -> master of a partition whose master is down replaces it", () => {
    const m = new NodeMap();
    m.add(H, 1);
    m.add(H, 2);
    m.setRole(H, 1, "master", 1, 0);
    m.down(H, 1);
    expect(m.setRole(H, 2, "master", 3, 0)).toMatchObject({ ok: true });
    expect(brief(m, 2)).toBe("master/active/0/3");
    expect(brief(m, 1)).toBe("proxy/down/-1/0");
    expect(m.remove(H, 1)).toMatchObject({ ok: true });
    expect(m.get(H, 1)).toBeUndefined();
  });

  it("proxy -> slave prepares; its balance is forced to 0 unless its master prepares too", () => {
    const m = new NodeMap();
    for (const p of [1, 2, 3, 4]) m.add(H, p);
    expect(m.setRole(H, 2, "slave", 2, 0)).toMatchObject({ ok: false }); // no master yet
    m.setRole(H, 1, "master", 1, 0);
    expect(m.setRole(H, 2, "slave", 2, 0)).toMatchObject({ ok: true });
    expect(brief(m, 2)).toBe("slave/prepare/0/0");
    m.setRole(H, 3, "master", 1, 1);
    expect(m.setRole(H, 4, "slave", 5, 1)).toMatchObject({ ok: true });
    expect(brief(m, 4)).toBe("slave/prepare/1/5");
  });

  it("a rebuilt slave gets the balance asked for when it becomes active, not before", () => {
    const m = new NodeMap();
    m.add(H, 1);
    m.add(H, 2);
    m.setRole(H, 1, "master", 1, 0);
    m.setRole(H, 2, "slave", 3, 0);
    expect(brief(m, 2)).toBe("slave/prepare/0/0");
    m.up(H, 2);
    expect(brief(m, 2)).toBe("slave/active/0/3");
  });

  it("master transitions: balance only; never to slave; proxy only while not active", () => {
    const m = seed();
    expect(m.setRole(H, 11211, "master", 3)).toMatchObject({ ok: true });
    expect(brief(m, 11211)).toBe("master/active/0/3");
    expect(m.setRole(H, 11211, "slave", 1, 0)).toMatchObject({ ok: false });
    expect(m.setRole(H, 11211, "proxy")).toMatchObject({ ok: false });
    const p = new NodeMap();
    for (const port of [1, 2, 3]) p.add(H, port);
    p.setRole(H, 1, "master", 1, 0);
    p.setRole(H, 2, "master", 1, 1);
    p.setRole(H, 3, "slave", 1, 1);
    expect(p.setRole(H, 2, "proxy")).toMatchObject({ ok: true });
    expect(brief(p, 2)).toBe("proxy/active/-1/0");
    expect(brief(p, 3)).toBe("proxy/active/-1/0");
  });

  it("slave transitions: balance change, to proxy, never to master; the partition keeps some weight", () => {
    const m = seed();
    expect(m.setRole(H, 11212, "slave", 5, 9)).toMatchObject({ ok: true });
    expect(brief(m, 11212)).toBe("slave/active/0/5");
    expect(m.setRole(H, 11212, "master", 1, 0)).toMatchObject({ ok: false });
    expect(m.setRole(H, 11211, "master", 0)).toMatchObject({ ok: true });
    expect(m.setRole(H, 11212, "slave", 0, 0)).toMatchObject({ ok: false });
    expect(m.setRole(H, 11212, "proxy")).toMatchObject({ ok: false });
    m.setRole(H, 11211, "master", 1);
    expect(m.setRole(H, 11212, "proxy")).toMatchObject({ ok: true });
    expect(brief(m, 11212)).toBe("proxy/active/-1/0");
  });

  it("a preparing slave's balance waits; it can drop to proxy", () => {
    const m = new NodeMap();
    m.add(H, 1);
    m.add(H, 2);
    m.setRole(H, 1, "master", 1, 0);
    m.setRole(H, 2, "slave", 0, 0);
    expect(m.setRole(H, 2, "slave", 3, 0)).toMatchObject({ ok: false });
    expect(m.setRole(H, 2, "master", 1, 0)).toMatchObject({ ok: false });
    expect(m.setRole(H, 2, "proxy")).toMatchObject({ ok: true });
    expect(brief(m, 2)).toBe("proxy/active/-1/0");
  });

  it("a down node cannot change role; only down nodes are removed; prepare is not a settable state", () => {
    const m = seed();
    m.down(H, 11213);
    expect(m.setRole(H, 11213, "slave", 1, 0)).toMatchObject({ ok: false });
    expect(m.remove(H, 11212)).toMatchObject({ ok: false });
    expect(m.setState(H, 11212, "prepare")).toMatchObject({ ok: false });
    expect(m.remove(H, 11213)).toMatchObject({ ok: true });
  });

  it("a preparing master that dies takes its preparing slaves down to proxies", () => {
    const m = new NodeMap();
    for (const p of [1, 2, 3]) m.add(H, p);
    m.setRole(H, 1, "master", 1, 0);
    m.setRole(H, 2, "master", 1, 1);
    m.setRole(H, 3, "slave", 1, 1);
    m.down(H, 2);
    expect(brief(m, 2)).toBe("proxy/down/-1/0");
    expect(brief(m, 3)).toBe("proxy/active/-1/0");
  });

  it("NODE lines round-trip with numeric role and state", () => {
    const m = seed();
    for (const n of m.list()) expect(parseNodeLine(nodeLine(n))).toEqual(n);
    expect(nodeLine(m.get(H, 11212) as never)).toBe("NODE localhost 11212 1 0 0 2 17");
    expect(parseNodeLine("NODE x 1 9 0 0 0 16")).toBeNull();
  });

  it("survives a round trip through its data", () => {
    const m = seed();
    const copy = new NodeMap(m.toData());
    expect(copy.toData()).toEqual(m.toData());
    copy.add(H, 11214);
    expect(copy.get(H, 11214)?.threadType).toBe(19);
  });
});
