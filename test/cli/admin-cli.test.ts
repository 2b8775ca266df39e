/** `flare admin` against real processes: the operations Flare operators did by hand. */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { admin, joinArgs, startIndex, until } from "../helpers/cluster.js";
import { type NodeProcess, startNodeProcess, stopAll } from "../helpers/processes.js";
import { RawClient } from "../helpers/raw-client.js";

const BIN = fileURLToPath(new URL("../../bin/flare", import.meta.url));

/** Runs `flare admin ...`; stdout as bytes (dump output is binary). */
async function flareAdmin(
  args: string[],
  stdin?: Buffer,
): Promise<{ code: number | null; out: Buffer; err: string }> {
  const proc = spawn(process.execPath, [BIN, "admin", ...args], { stdio: ["pipe", "pipe", "pipe"] });
  const out: Buffer[] = [];
  let err = "";
  proc.stdout.on("data", (d: Buffer) => out.push(d));
  proc.stderr.on("data", (d: Buffer) => {
    err += d.toString();
  });
  proc.stdin.end(stdin);
  const [code] = (await once(proc, "exit")) as [number | null];
  return { code, out: Buffer.concat(out), err };
}

const ITEMS = 3000;

describe("flare admin", () => {
  let index: NodeProcess;
  let master: NodeProcess;
  let spare: NodeProcess;
  let at: string[];

  beforeAll(async () => {
    index = await startIndex();
    at = ["--index", `127.0.0.1:${index.port}`];
    master = await startNodeProcess(joinArgs(index));
    spare = await startNodeProcess(joinArgs(index, ["--reconstruction-interval", "200"]));
    expect(
      (await flareAdmin([...at, "role", "localhost", String(master.port), "master", "1", "0"])).code,
    ).toBe(0);
    const c = await RawClient.open(master.port);
    let batch = "";
    // Binary values (every byte value, CR LF included) must survive dump and replay.
    for (let i = 0; i < ITEMS; i++)
      batch += `set key:${i} ${i % 7} 0 4\r\n${String.fromCharCode(i % 256, 13, 10, 0)}\r\n`;
    c.send(Buffer.from(batch, "latin1"));
    let stored = "";
    while ((stored.match(/STORED\r\n/g) ?? []).length < ITEMS) stored += await c.readUntil("\r\n");
    c.close();
  });

  afterAll(stopAll);

  it("stats nodes: a table with the index first, and --json", async () => {
    const table = await flareAdmin([...at, "stats", "nodes"]);
    expect(table.code).toBe(0);
    const lines = table.out.toString().trim().split("\n");
    expect(lines[0]).toMatch(/^NODE\s+ROLE\s+STATE\s+PARTITION\s+BALANCE\s+THREAD\s+ITEMS$/);
    expect(lines[1]).toMatch(new RegExp(`^127\\.0\\.0\\.1:${index.port}\\s+index\\s+active`));
    expect(lines).toContainEqual(
      expect.stringMatching(
        new RegExp(`^localhost:${master.port}\\s+master\\s+active\\s+0\\s+1\\s+\\d+\\s+${ITEMS}$`),
      ),
    );
    expect(lines).toContainEqual(
      expect.stringMatching(new RegExp(`^localhost:${spare.port}\\s+proxy\\s+active.*\\s0$`)),
    );
    expect(lines.at(-1)).toBe(`keys per partition: 0: ${ITEMS}`);
    const json = JSON.parse((await flareAdmin([...at, "--json", "stats", "nodes"])).out.toString());
    expect(json.index).toBe(`127.0.0.1:${index.port}`);
    expect(json.nodes.find((n: { port: number }) => n.port === spare.port)).toMatchObject({
      role: "proxy",
      state: "active",
      items: 0,
    });
    expect(json.partitions).toEqual([
      { partition: 0, master: `localhost:${master.port}`, state: "active", keys: ITEMS },
    ]);
  });

  it("add-slave: attaches with balance 0, shows progress while rebuilding, then raises the balance", async () => {
    const r = await flareAdmin([...at, "add-slave", "localhost", String(spare.port), "0", "2"]);
    expect(r.code, r.err).toBe(0);
    // Not a terminal: progress comes as lines, ending when the rebuild is done.
    expect(r.err).toMatch(/rebuilding/);
    expect(r.err).toMatch(/\d+%\s+\d+\/3000 items/);
    expect(r.err).toMatch(/rebuilt in [\d.]+ s; raising its balance to 2/);
    expect(r.out.toString()).toMatch(new RegExp(`localhost:${spare.port}\\s+slave\\s+active\\s+0\\s+2`));
    const stats = await admin(spare.port, "stats", "END\r\n");
    expect(stats).toContain(`STAT curr_items ${ITEMS}`);
  });

  it("dump streams every item as set commands that restore a node byte for byte; --json too", async () => {
    const dump = await flareAdmin(["dump", "localhost", String(master.port)]);
    expect(dump.code, dump.err).toBe(0);
    expect(dump.err).toContain(`${ITEMS} items`);
    const restored = await startNodeProcess([]);
    const c = await RawClient.open(restored.port);
    c.send(dump.out);
    let replies = "";
    while (replies.split("\r\n").length <= ITEMS) replies += await c.readUntil("\r\n");
    expect(replies).toBe("STORED\r\n".repeat(ITEMS));
    c.send("get key:13 key:2999\r\n");
    const got = Buffer.from(await c.readUntil("END\r\n"), "latin1");
    expect(got.toString("latin1")).toBe(
      `VALUE key:13 6 4\r\n\x0d\r\n\x00\r\nVALUE key:2999 3 4\r\n${String.fromCharCode(2999 % 256)}\r\n\x00\r\nEND\r\n`,
    );
    c.close();
    await restored.stop();
    const json = await flareAdmin(["--json", "dump", "localhost", String(master.port)]);
    const items = json.out
      .toString()
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(items).toHaveLength(ITEMS);
    const one = items.find((i: { key: string }) => i.key === "key:65");
    expect(one).toMatchObject({ flags: 65 % 7, expire: 0 });
    expect(Buffer.from(one.value, "base64")).toEqual(Buffer.from([65, 13, 10, 0]));
  });

  it("ping: the index and every node; a node that is gone fails the command", async () => {
    const ok = await flareAdmin([...at, "ping"]);
    expect(ok.code, ok.out.toString()).toBe(0);
    expect(ok.out.toString().trim().split("\n")).toHaveLength(3);
    expect(ok.out.toString()).toMatch(/^OK\s+index 127\.0\.0\.1:\d+\s+[\d.]+ ms$/m);
    const gone = await flareAdmin(["ping", "127.0.0.1", "1"]);
    expect(gone.code).toBe(1);
    expect(gone.out.toString()).toMatch(/^FAIL\s+127\.0\.0\.1:1\s+.*ECONNREFUSED/m);
  });

  it("refusals and bad input: one clear line and a non-zero exit, nothing changed", async () => {
    const refused = await flareAdmin([...at, "role", "localhost", "1", "master", "1", "0"]);
    expect(refused.code).toBe(1);
    expect(refused.err).toBe(
      "flare admin: node role localhost 1 master 1 0: SERVER_ERROR failed to set role (and balance)\n",
    );
    const badRole = await flareAdmin([...at, "role", "localhost", String(master.port), "boss"]);
    expect(badRole.code).toBe(2);
    expect(badRole.err).toContain("ROLE: one of master, slave, proxy");
    const noIndex = await flareAdmin(["--index", "127.0.0.1:1", "stats", "nodes"]);
    expect(noIndex.code).toBe(1);
    expect(noIndex.err).toMatch(/^flare admin: cannot reach a server: .*ECONNREFUSED/);
    const unknown = await flareAdmin([...at, "frobnicate"]);
    expect(unknown.code).toBe(2);
    expect(unknown.err).toContain("unknown command 'frobnicate'");
    const again = await flareAdmin([...at, "add-slave", "localhost", String(spare.port), "0"]);
    expect(again.code).toBe(1);
    expect(again.err).toBe(`flare admin: localhost:${spare.port} is already a slave\n`);
    const listing = (await flareAdmin([...at, "stats", "nodes"])).out.toString();
    expect(listing).toMatch(new RegExp(`localhost:${master.port}\\s+master\\s+active\\s+0\\s+1`));
  });

  // Last: it splits the keys, which the tests above count whole.
  it("add-partition: a running proxy node becomes master of partition 1, with progress; the keys split", async () => {
    const extra = await startNodeProcess(joinArgs(index, ["--reconstruction-interval", "200"]));
    const r = await flareAdmin([...at, "add-partition", "localhost", String(extra.port)]);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/master of new partition 1, copying from localhost:\d+/);
    expect(r.err).toMatch(/\d+%\s+\d+\/\d+ items/);
    expect(r.err).toMatch(/partition 1 active after [\d.]+ s/);
    expect(r.out.toString()).toMatch(new RegExp(`localhost:${extra.port}\\s+master\\s+active\\s+1\\s+1`));
    const items = (port: number) =>
      admin(port, "stats", "END\r\n").then((t) => Number(/STAT curr_items (\d+)/.exec(t)?.[1]));
    const moved = await items(extra.port);
    // About half of the keys move to the second partition.
    expect(moved).toBeGreaterThan(ITEMS * 0.4);
    expect(moved).toBeLessThan(ITEMS * 0.6);
    // Once the first partition dropped the keys that moved, the listing counts each key once.
    const remaining = ITEMS - moved;
    await until("the moved keys to be dropped", async () => (await items(master.port)) === remaining);
    const listing = await flareAdmin([...at, "stats", "nodes"]);
    expect(listing.out.toString().trim().split("\n").at(-1)).toBe(
      `keys per partition: 0: ${remaining}  1: ${moved}`,
    );
    const twice = await flareAdmin([...at, "add-partition", "localhost", String(extra.port)]);
    expect(twice.code).toBe(1);
    expect(twice.err).toBe(`flare admin: localhost:${extra.port} is already a master\n`);
  });
});
