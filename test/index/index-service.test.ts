/** The index in-process: its text protocol byte for byte, its HTTP API, and its map file. */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfigText, validateConfig } from "../../common/config.js";
import { createLogger } from "../../common/log.js";
import { indexConfigSpec } from "../../index/config.js";
import { type RunningIndex, startIndex } from "../../index/index-server.js";
import { mapFile } from "../../index/persistence.js";
import { nodeConfigSpec } from "../../storage/config.js";
import { runFlare } from "../helpers/processes.js";
import { RawClient } from "../helpers/raw-client.js";

const fixture = (name: string) =>
  readFileSync(new URL(`../fixtures/seed-configs/${name}`, import.meta.url), "utf8");

function indexConfig(dir: string, extra: [string, string][] = []) {
  return validateConfig(
    indexConfigSpec,
    // The nodes named here do not exist: an hour between checks keeps monitors from changing the map.
    new Map([
      ["data-dir", dir],
      ["server-port", "0"],
      ["http-port", "0"],
      ["admin-token", "s3cret"],
      ["monitor-interval", "3600"],
      ...extra,
    ]),
  );
}

let index: RunningIndex;
let dir: string;
let c: RawClient;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "flare-index-"));
  index = await startIndex(indexConfig(dir), createLogger());
  c = await RawClient.open(index.port);
});
afterAll(async () => {
  c.close();
  await index.stop();
});

describe("index text protocol", () => {
  it("node add answers the whole map as NODE lines, not OK", async () => {
    expect(await c.ask("node add localhost 11211\r\n", "END\r\n")).toBe(
      "NODE localhost 11211 2 0 -1 0 16\r\nEND\r\n",
    );
    expect(await c.ask("node add localhost 11212\r\n", "END\r\n")).toBe(
      "NODE localhost 11211 2 0 -1 0 16\r\nNODE localhost 11212 2 0 -1 0 17\r\nEND\r\n",
    );
  });

  it("node role / state / remove answer OK or flarei's SERVER_ERROR lines", async () => {
    expect(await c.ask("node role localhost 11211 master 1 0\r\n")).toBe("OK\r\n");
    expect(await c.ask("node role localhost 11211 slave 1 0\r\n")).toBe(
      "SERVER_ERROR failed to set role (and balance)\r\n",
    );
    expect(await c.ask("node role localhost 11212 slave 2 0\r\n")).toBe("OK\r\n");
    expect(await c.ask("node state localhost 11212 prepare\r\n")).toBe(
      "SERVER_ERROR failed to set state\r\n",
    );
    expect(await c.ask("node state localhost 11212 active\r\n")).toBe("OK\r\n");
    expect(await c.ask("node remove localhost 11212\r\n")).toBe("SERVER_ERROR failed to remove node\r\n");
    expect(await c.ask("stats nodes\r\n", "END\r\n")).toBe(
      [
        "STAT localhost:11211:role master",
        "STAT localhost:11211:state active",
        "STAT localhost:11211:partition 0",
        "STAT localhost:11211:balance 1",
        "STAT localhost:11211:thread_type 16",
        "STAT localhost:11212:role slave",
        "STAT localhost:11212:state active",
        "STAT localhost:11212:partition 0",
        // The balance asked for while it was rebuilding took effect when it became active.
        "STAT localhost:11212:balance 2",
        "STAT localhost:11212:thread_type 17",
        "END",
        "",
      ].join("\r\n"),
    );
  });

  it("meta, ping, version, malformed lines", async () => {
    // The suggested lease follows this index's monitor settings (interval 3600 s here); the time is
    // its clock, for the masters' lease arithmetic.
    expect(await c.ask("meta\r\n", "END\r\n")).toMatch(
      /^META partition-size 1024\r\nMETA key-hash-algorithm simple\r\nMETA partition-type modular\r\nMETA partition-modular-hint 1\r\nMETA partition-modular-virtual 4096\r\nMETA master-lease 3601500\r\nMETA time \d{13}\r\nEND\r\n$/,
    );
    expect(await c.ask("ping\r\n")).toBe("OK\r\n");
    expect(await c.ask("version\r\n")).toMatch(/^VERSION flare-ts-/);
    for (const bad of [
      "get k",
      "node",
      "node role localhost x master",
      "node role localhost 1 boss",
      "",
      "stats bogus",
    ]) {
      expect(await c.ask(`${bad}\r\n`), bad).toBe("ERROR\r\n");
    }
    expect(await c.ask("stats\r\n", "END\r\n")).toMatch(/STAT node_map_version \d+\r\n/);
  });

  it("shutdown marks a node down at once; quit answers END and closes", async () => {
    expect(await c.ask("shutdown localhost 11212\r\n")).toBe("OK\r\n");
    expect(await c.ask("stats nodes\r\n", "END\r\n")).toContain("STAT localhost:11212:state down\r\n");
    const q = await RawClient.open(index.port);
    q.send("quit\r\n");
    expect(await q.waitClosed()).toBe("END\r\n");
  });

  it("every change is in the map file, written whole", () => {
    const saved = JSON.parse(readFileSync(mapFile(dir), "utf8"));
    expect(saved.version).toBe(index.service.map.version);
    expect(saved.nodes).toHaveLength(2);
  });
});

describe("index HTTP API", () => {
  const base = () => `http://127.0.0.1:${index.httpPort}`;

  it("GET /v1/cluster returns the map; ?after=V waits for a newer one", async () => {
    const now = await (await fetch(`${base()}/v1/cluster`)).json();
    expect(now.version).toBe(index.service.map.version);
    expect(now.nodes.map((n: { port: number }) => n.port)).toEqual([11211, 11212]);
    const waiting = fetch(`${base()}/v1/cluster?after=${now.version}`).then((r) => r.json());
    await new Promise((r) => setTimeout(r, 100));
    await c.ask("node add localhost 11213\r\n", "END\r\n");
    const next = await waiting;
    expect(next.version).toBe(now.version + 1);
    // &wait bounds the wait: with no newer map, the current one comes back.
    const bounded = await (await fetch(`${base()}/v1/cluster?after=${next.version}&wait=50`)).json();
    expect(bounded.version).toBe(next.version);
    expect((await fetch(`${base()}/v1/cluster?after=1&wait=soon`)).status).toBe(400);
  });

  it("changes need the admin token and answer refusals with 409", async () => {
    const role = (token?: string) =>
      fetch(`${base()}/v1/nodes/localhost/11213/role`, {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          ...(token ? { Authorization: `Bearer ${token}` } : {}),
        },
        body: JSON.stringify({ role: "slave", balance: 1, partition: 0 }),
      });
    expect((await role()).status).toBe(401);
    const ok = await role("s3cret");
    expect(ok.status).toBe(200);
    expect((await ok.json()).nodes.find((n: { port: number }) => n.port === 11213).role).toBe("slave");
    const refused = await fetch(`${base()}/v1/nodes/localhost/11213/role`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: "Bearer s3cret" },
      body: JSON.stringify({ role: "master", balance: 1, partition: 0 }),
    });
    expect(refused.status).toBe(409);
    expect((await refused.json()).error.code).toBe("REFUSED");
  });

  it("metrics and healthz", async () => {
    const text = await (await fetch(`${base()}/metrics`)).text();
    expect(text).toMatch(/\nflare_map_version \d+/);
    expect(text).toContain('flare_index_nodes{role="master",state="active"} 1');
    expect(text).toMatch(/\nflare_failovers_total \d+/);
    expect(text).toMatch(/flare_map_node\{node="[^"]+",role="master",state="active",partition="0"\} 1/);
    expect(text).toContain('flare_info{role="index"');
    expect(text).toMatch(/flare_process_cpu_seconds_total\{mode="user"\} [\d.]+/);
    expect((await fetch(`${base()}/healthz`)).status).toBe(200);
  });
});

describe("index persistence and configuration", () => {
  it("a corrupt map file stops start-up with a clear message and is not overwritten", async () => {
    const d = mkdtempSync(join(tmpdir(), "flare-index-"));
    writeFileSync(mapFile(d), "{ not json");
    const { code, stderr } = await runFlare(["index", "--data-dir", d, "--server-port", "0"]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/^flare: data-dir: .*flare-index.json is corrupt/);
    expect(readFileSync(mapFile(d), "utf8")).toBe("{ not json");
  });

  it("a restarted index has the same map and version", async () => {
    const d = mkdtempSync(join(tmpdir(), "flare-index-"));
    const first = await startIndex(indexConfig(d), createLogger());
    expect((await first.service.add("localhost", 1)).ok).toBe(true);
    expect((await first.service.setRole("localhost", 1, "master", 1, 0)).ok).toBe(true);
    const data = first.service.map.toData();
    await first.stop();
    const second = await startIndex(indexConfig(d), createLogger());
    expect(second.service.map.toData()).toEqual(data);
    await second.stop();
  });

  it("index-db = file://DIR keeps the map in DIR, as data-dir does", async () => {
    const d = mkdtempSync(join(tmpdir(), "flare-index-db-"));
    const { "data-dir": _, ...rest } = indexConfig(d);
    const first = await startIndex({ ...rest, "index-db": `file://${d}` }, createLogger());
    expect((await first.service.add("localhost", 2)).ok).toBe(true);
    await first.stop();
    expect(JSON.parse(readFileSync(mapFile(d), "utf8")).nodes).toHaveLength(1);
    const second = await startIndex({ ...rest, "index-db": `file://${d}` }, createLogger());
    expect(second.service.map.list().map((n) => n.port)).toEqual([2]);
    await second.stop();
  });

  it("the seed write-up's four config files load unchanged", () => {
    expect(validateConfig(indexConfigSpec, parseConfigText(fixture("flarei.conf")))).toMatchObject({
      "monitor-interval": 1,
      "monitor-threshold": 3,
      "server-port": 12120,
    });
    for (const name of ["flared_master.conf", "flared_slave.conf", "flared_proxy.conf"]) {
      const cfg = validateConfig(nodeConfigSpec, parseConfigText(fixture(name)));
      expect(cfg["storage-type"]).toBe("tch");
      expect(cfg["index-server-name"]).toBe("localhost");
    }
  });
});
