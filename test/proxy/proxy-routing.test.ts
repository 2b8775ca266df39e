/** The proxy with real processes: config files, partitions, multi-get order, bounded write waits. */
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { keyHash, ModularResolver } from "../../protocol/key-hash.js";
import { admin, joinArgs, nodeState, startIndex, until } from "../helpers/cluster.js";
import { checkHttpContract } from "../helpers/http-contract.js";
import { startNodeProcess, startRole, stopAll } from "../helpers/processes.js";
import { RawClient } from "../helpers/raw-client.js";
import { slowReader } from "../helpers/slow-reader.js";

afterAll(stopAll);

const seedProxyConf = fileURLToPath(new URL("../fixtures/seed-configs/flared_proxy.conf", import.meta.url));

describe("proxy routing", () => {
  it("starts from the seed's flared_proxy.conf, spreads keys over two partitions and answers multi-gets in order", async () => {
    const index = await startIndex();
    const a = await startNodeProcess(joinArgs(index));
    const b = await startNodeProcess(joinArgs(index));
    expect(await admin(index.port, `node role localhost ${a.port} master 1 0`)).toBe("OK\r\n");
    expect(await admin(index.port, `node role localhost ${b.port} master 1 1`)).toBe("OK\r\n");
    expect(await admin(index.port, `node state localhost ${b.port} ready`)).toBe("OK\r\n");
    expect(await admin(index.port, `node state localhost ${b.port} active`)).toBe("OK\r\n");
    // The seed file as is; only its fixed ports give way to the test's.
    const proxy = await startRole("proxy", "proxy started", [
      "-f",
      seedProxyConf,
      "--server-port",
      "0",
      "--index-server-name",
      "127.0.0.1",
      "--index-server-port",
      String(index.port),
    ]);
    expect(proxy.stderr()).toContain('"config key ignored"');
    await until("the proxy to see both masters", async () =>
      (await admin(proxy.port, "stats nodes", "END\r\n")).includes(`STAT localhost:${b.port}:state active`),
    );

    const c = await RawClient.open(proxy.port);
    const keys = Array.from({ length: 40 }, (_, i) => `key${i}`);
    for (const k of keys) expect(await c.ask(`set ${k} 3 0 ${k.length}\r\n${k}\r\n`)).toBe("STORED\r\n");
    // Both masters got some of the keys.
    const onA = await admin(a.port, `get ${keys.join(" ")}`, "END\r\n");
    const onB = await admin(b.port, `get ${keys.join(" ")}`, "END\r\n");
    expect(onA.split("VALUE").length - 1).toBeGreaterThan(5);
    expect(onB.split("VALUE").length - 1).toBeGreaterThan(5);
    // Each key is where Flare's simple hash and modular resolver put it.
    const resolver = new ModularResolver();
    for (const k of keys) {
      const owner = resolver.resolve(keyHash(k, "simple"), 2) === 0 ? onA : onB;
      expect(owner, k).toContain(`VALUE ${k} 3 `);
    }
    const wanted = [...keys].reverse().concat(["missing"]);
    const expected = `${[...keys]
      .reverse()
      .map((k) => `VALUE ${k} 3 ${k.length}\r\n${k}\r\n`)
      .join("")}END\r\n`;
    expect(await c.ask(`get ${wanted.join(" ")}\r\n`, "END\r\n")).toBe(expected);
    expect(await c.ask("incr nothing 1\r\n")).toBe("NOT_FOUND\r\n");
    expect(await c.ask("delete key0\r\n")).toBe("DELETED\r\n");
    expect(await c.ask("get key0\r\n", "END\r\n")).toBe("END\r\n");
    expect(await c.ask("ping\r\n")).toBe("OK\r\n");
    // Pipelined: a read after a write of the same key sees it, whichever replica serves it.
    let pipeline = "";
    let wanted2 = "";
    for (let i = 0; i < 50; i++) {
      pipeline += `set p${i} 0 0 2\r\nv${i % 10}\r\nget p${i}\r\n`;
      wanted2 += `STORED\r\nVALUE p${i} 0 2\r\nv${i % 10}\r\nEND\r\n`;
    }
    c.send(pipeline);
    expect(await c.readUntil(`VALUE p49 0 2\r\nv9\r\nEND\r\n`)).toBe(wanted2);
    c.close();
  });

  it("the HTTP API: PUT/GET with ETag, cas, add, incr, DELETE, multi-get, JSON errors", async () => {
    const index = await startIndex();
    const a = await startNodeProcess(joinArgs(index, ["--http-port", "0"]));
    await admin(index.port, `node role localhost ${a.port} master 1 0`);
    const proxy = await startRole("proxy", "proxy started", joinArgs(index, ["--http-port", "0"]));
    const base = `http://127.0.0.1:${proxy.httpPort}/v1/kv`;
    await until(
      "the proxy to route",
      async () => (await fetch(`${base}/k`, { method: "PUT", body: "1" })).status === 200,
    );

    const put = await fetch(`${base}/user%3A1?flags=7`, { method: "PUT", body: "hello" });
    // The node's answer, as the node gives it.
    expect(await put.json()).toEqual({ stored: true, version: expect.stringMatching(/^\d+$/) });
    const get = await fetch(`${base}/user%3A1`);
    expect(await get.text()).toBe("hello");
    expect(get.headers.get("x-flare-flags")).toBe("7");
    const tag = get.headers.get("etag") as string;
    expect(tag).toMatch(/^"\d+"$/);
    expect(
      (await fetch(`${base}/user%3A1`, { method: "PUT", body: "v2", headers: { "If-Match": tag } })).status,
    ).toBe(200);
    const stale = await fetch(`${base}/user%3A1`, {
      method: "PUT",
      body: "v3",
      headers: { "If-Match": tag },
    });
    expect(stale.status).toBe(412);
    expect((await stale.json()).error.code).toBe("CAS_MISMATCH");
    expect(
      (await fetch(`${base}/user%3A1`, { method: "PUT", body: "x", headers: { "If-None-Match": "*" } }))
        .status,
    ).toBe(412);
    await fetch(`${base}/n`, { method: "PUT", body: "41" });
    expect(await (await fetch(`${base}/n/incr`, { method: "POST" })).json()).toEqual({ value: "42" });
    const multi = await (await fetch(`${base}?keys=n,user%3A1,missing`)).json();
    expect(Object.keys(multi.items)).toEqual(["n", "user:1"]);
    expect(Buffer.from(multi.items["user:1"].value, "base64").toString()).toBe("v2");
    expect((await fetch(`${base}/n`, { method: "DELETE" })).status).toBe(204);
    const gone = await fetch(`${base}/n`);
    expect(gone.status).toBe(404);
    expect((await gone.json()).error.code).toBe("NOT_FOUND");
    expect((await fetch(`${base}/a%20b`)).status).toBe(400);
    await checkHttpContract(base);
  });

  it("a write whose master is gone and has no slave fails after proxy-write-wait with a clear error, and so does a read", async () => {
    const index = await startIndex();
    const a = await startNodeProcess(joinArgs(index));
    await admin(index.port, `node role localhost ${a.port} master 1 0`);
    const proxy = await startRole("proxy", "proxy started", joinArgs(index, ["--proxy-write-wait", "1500"]));
    await until(
      "the proxy to route",
      async () => (await admin(proxy.port, "set k 0 0 1\r\nx")) === "STORED\r\n",
    );
    a.proc.kill("SIGKILL");
    await until("the master to be down", async () => (await nodeState(index, a.port)) === "master/down");
    const t0 = Date.now();
    expect(await admin(proxy.port, "set k 0 0 1\r\ny")).toBe(
      "SERVER_ERROR no master for this key: failover did not finish in time\r\n",
    );
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1400);
    // The dead master keeps its partition reserved (Flare): nothing can serve it.
    expect(await admin(proxy.port, "get k", "\r\n")).toBe("SERVER_ERROR no partition available\r\n");
  });

  it("a client of the proxy that stops reading while it sends one request a packet gets every reply in order, small values and large", async () => {
    const index = await startIndex();
    const a = await startNodeProcess(joinArgs(index));
    expect(await admin(index.port, `node role localhost ${a.port} master 1 0`)).toBe("OK\r\n");
    const proxy = await startRole("proxy", "proxy started", ["--server-port", "0", ...joinArgs(index)]);
    await until("the proxy to see the master", async () =>
      (await admin(proxy.port, "stats nodes", "END\r\n")).includes(`STAT localhost:${a.port}:role master`),
    );
    const { got, expected } = await slowReader(proxy.port);
    expect(got.length).toBe(expected.length);
    expect(got.equals(expected)).toBe(true);
    // Replies past 4 KiB are passed on as views of what the proxy read from the node, which it
    // must not read into again while they wait for this client.
    const large = await slowReader(proxy.port, 1000, 6000);
    expect(large.got.length).toBe(large.expected.length);
    expect(large.got.equals(large.expected)).toBe(true);
    // Meanwhile another client's replies come from the node on the same connections: they must not
    // be read into the memory those views hold.
    const busy = await RawClient.open(proxy.port);
    const values = Array.from({ length: 20 }, (_, k) => `value-${k}-${"z".repeat(k * 7)}`);
    for (const [k, v] of values.entries())
      expect(await busy.ask(`set y${k} 0 0 ${v.length}\r\n${v}\r\n`)).toBe("STORED\r\n");
    let stop = false;
    let answered = 0;
    const wrong: string[] = [];
    const other = (async () => {
      for (let i = 0; !stop; i++) {
        const k = i % values.length;
        const v = values[k] as string;
        const reply = await busy.ask(`get y${k}\r\n`, "END\r\n");
        if (reply !== `VALUE y${k} 0 ${v.length}\r\n${v}\r\nEND\r\n`) wrong.push(reply);
        answered++;
      }
    })();
    const together = await slowReader(proxy.port, 1000, 6000);
    stop = true;
    await other;
    busy.close();
    expect(wrong).toEqual([]);
    expect(answered).toBeGreaterThan(100);
    expect(together.got.length).toBe(together.expected.length);
    expect(together.got.equals(together.expected)).toBe(true);
  });
});
