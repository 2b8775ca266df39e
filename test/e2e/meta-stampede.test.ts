/**
 * The anti-stampede flags of the meta protocol under concurrency: many clients ask for the same
 * missing, expiring or stale item at once, and exactly one of them is told it won the recache (W);
 * the others hear that someone did (Z). On a node, through the proxy and through a slave that
 * passes meta requests on to its master, while a set/get load runs through the proxy.
 */
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { admin, type SeedLayout, seedLayout } from "../helpers/cluster.js";
import { Load } from "../helpers/load.js";
import { type NodeProcess, startNodeProcess, stopAll } from "../helpers/processes.js";
import { RawClient } from "../helpers/raw-client.js";

afterAll(stopAll);

const CLIENTS = 40;
const ROUNDS = 8;

/** Sends `request` on every client in one tick; returns each client's reply (closed by an mn). */
async function all(clients: RawClient[], request: string): Promise<string[]> {
  for (const c of clients) c.send(Buffer.from(`${request}\r\nmn\r\n`));
  return Promise.all(clients.map((c) => c.readUntil("MN\r\n", 10_000)));
}

/** One meta request's whole answer (an mn closes it). */
const ask = async (port: number, request: string): Promise<string> =>
  (await admin(port, `${request}\r\nmn`, "MN\r\n")).slice(0, -"MN\r\n".length);

const winners = (replies: string[]): number => replies.filter((r) => / W\r\n/.test(r)).length;

describe("meta protocol: one win token among many concurrent clients", () => {
  let node: NodeProcess;
  let cluster: SeedLayout;
  const load = new Load();
  beforeAll(async () => {
    [node, cluster] = await Promise.all([startNodeProcess(), seedLayout("stampede-secret")]);
    await load.start(cluster.proxy.port);
  }, 60_000);
  afterAll(async () => {
    await load.stop();
    await cluster?.stop();
  });

  const targets = (): [string, number][] => [
    ["a node", node.port],
    ["the proxy", cluster.proxy.port],
    ["a slave passing meta requests on to its master", cluster.slave.port],
  ];

  it.each([0, 1, 2])(
    "vivify (N), recache (R) and stale (md I): exactly one W per item, target %i",
    async (t) => {
      const [what, port] = targets()[t] as [string, number];
      const clients = await Promise.all(Array.from({ length: CLIENTS }, () => RawClient.open(port)));
      try {
        for (let round = 0; round < ROUNDS; round++) {
          const tag = `${t}-${round}-${Date.now()}`;
          const vivified = await all(clients, `mg viv-${tag} v N30 t`);
          expect(winners(vivified), `${what}: N`).toBe(1);
          expect(vivified.filter((r) => r === "VA 0 t30 Z\r\n\r\nMN\r\n").length, what).toBe(CLIENTS - 1);

          expect(await ask(port, `ms rc-${tag} 1 T5\r\nx`)).toBe("HD\r\n");
          const recache = await all(clients, `mg rc-${tag} v R30`);
          expect(winners(recache), `${what}: R`).toBe(1);
          expect(recache.filter((r) => r === "VA 1 Z\r\nx\r\nMN\r\n").length, what).toBe(CLIENTS - 1);

          expect(await ask(port, `ms st-${tag} 1\r\ny`)).toBe("HD\r\n");
          expect(await ask(port, `md st-${tag} I`)).toBe("HD\r\n");
          const stale = await all(clients, `mg st-${tag} v`);
          expect(winners(stale), `${what}: stale`).toBe(1);
          expect(stale.filter((r) => r === "VA 1 Z X\r\ny\r\nMN\r\n").length, what).toBe(CLIENTS - 1);
          // The winner recaches: the item is fresh again and nobody else is told to.
          expect(await ask(port, `ms st-${tag} 1\r\nz`)).toBe("HD\r\n");
          expect(await ask(port, `mg st-${tag} v`)).toBe("VA 1\r\nz\r\n");
        }
      } finally {
        for (const c of clients) c.close();
      }
      expect(load.failedSets).toEqual([]);
      expect(load.wrongGets).toEqual([]);
    },
    60_000,
  );

  it("explicit cas (E): the item takes it when newer; older, or from a client past 2^63, refused", async () => {
    for (const port of [node.port, cluster.proxy.port]) {
      const key = `e-${port}`;
      expect(await ask(port, `ms ${key} 1 E5000 c\r\na`)).toBe("HD c5000\r\n");
      expect(await ask(port, `mg ${key} c v`)).toBe("VA 1 c5000\r\na\r\n");
      // C on mg: the client holds that version, so no value comes (memcached's protocol document).
      expect(await ask(port, `mg ${key} v C5000`)).toBe("HD\r\n");
      expect(await ask(port, `mg ${key} v C1`)).toBe("VA 1\r\na\r\n");
      expect(await ask(port, `ms ${key} 1 E4000 c\r\nb`)).toBe("NS c0\r\n");
      expect(await ask(port, `ms ${key} 1 E9223372036854775808\r\nb`)).toBe(
        "CLIENT_ERROR explicit cas (E) must be below 2^63\r\n",
      );
      expect(await ask(port, `md ${key} I E6000`)).toBe("HD\r\n");
      expect(await ask(port, `mg ${key} c v`)).toBe("VA 1 c6000 X W\r\na\r\n");
      expect(await ask(port, `ma ${key}-n N0 J1 E7000 c v`)).toBe("VA 1 c7000\r\n1\r\n");
      // A classic write goes on from the explicit version.
      expect(await ask(port, `set ${key}-n 0 0 1\r\n2`)).toBe("STORED\r\n");
      expect(await ask(port, `mg ${key}-n c`)).toBe("HD c7001\r\n");
    }
    // Documented for ms since memcached 1.6.19 (1.6.18, the differential's reference, ignores it).
    expect(await ask(node.port, "ms append-viv 2 MA N30\r\nab")).toBe("HD\r\n");
    expect(await ask(node.port, "ms append-viv 2 MA N30\r\ncd")).toBe("HD\r\n");
    expect(await ask(node.port, "mg append-viv v t")).toBe("VA 4 t30\r\nabcd\r\n");
    expect(await ask(node.port, "ms append-none 2 MA\r\nab")).toBe("NS\r\n");
    // Replicated with the version it was given.
    expect(await admin(cluster.slave.port, `gets e-${cluster.proxy.port}`, "END\r\n")).toBe(
      `VALUE e-${cluster.proxy.port} 0 1 6000\r\na\r\nEND\r\n`,
    );
  });
});

describe("meta writes through a failover", () => {
  it("every ms the proxy acknowledged, before, during and after kill -9 of the master, is there after it", async () => {
    const cluster = await seedLayout("meta-failover-secret", ["--replication-type", "sync"]);
    onTestFinished(() => cluster.stop());
    const c = await RawClient.open(cluster.proxy.port);
    onTestFinished(() => c.close());
    const acked: number[] = [];
    const failed: string[] = [];
    const wrong: string[] = [];
    for (let i = 0; i < 3000; i++) {
      if (i === 1000) cluster.master.proc.kill("SIGKILL");
      const value = `v${i}`;
      const reply = await c.ask(`ms mk${i} ${value.length} O${i} c\r\n${value}\r\n`);
      if (/^HD O\d+ c\d+\r\n$/.test(reply) && reply.startsWith(`HD O${i} `)) acked.push(i);
      else failed.push(`${i}: ${reply.trim()}`);
      if (i % 7 === 0 && acked.length > 0) {
        const k = acked[Math.floor(Math.random() * acked.length)] as number;
        const got = await c.ask(`mg mk${k} v O${k}\r\nmn\r\n`, "MN\r\n");
        if (got !== `VA ${`v${k}`.length} O${k}\r\nv${k}\r\nMN\r\n`) wrong.push(`${k}: ${got.trim()}`);
      }
    }
    expect(failed).toEqual([]);
    expect(wrong).toEqual([]);
    const batch = acked.map((k) => `mg mk${k} v k q\r\n`).join("");
    const all = await c.ask(`${batch}mn\r\n`, "MN\r\n");
    expect(all.match(/^VA /gm)?.length).toBe(acked.length);
    for (const k of acked) expect(all).toContain(`VA ${`v${k}`.length} kmk${k}\r\nv${k}\r\n`);
  }, 60_000);
});
