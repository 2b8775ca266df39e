import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { validateConfig } from "../../common/config.js";
import { createLogger } from "../../common/log.js";
import { nodeConfigSpec } from "../../storage/config.js";
import { type RunningNode, startNode } from "../../storage/node.js";
import { checkHttpContract } from "../helpers/http-contract.js";
import { RawClient } from "../helpers/raw-client.js";

let node: RunningNode;
let base: string;

beforeAll(async () => {
  const config = validateConfig(
    nodeConfigSpec,
    new Map([
      ["server-port", "0"],
      ["http-port", "0"],
      ["item-size-max", "64k"],
    ]),
  );
  node = await startNode(config, createLogger());
  base = `http://127.0.0.1:${node.httpPort}`;
});
afterAll(() => node.stop());

describe("node HTTP API", () => {
  it("the contract the proxy keeps too: conditional requests, HEAD, 405, percent-decoded keys", async () => {
    await checkHttpContract(`${base}/v1/kv`);
    // The key %FE names is the byte 0xFE, the same item over memcached.
    const c = await RawClient.open(node.port);
    expect(await c.ask("get contract-\xfe\r\n", "END\r\n")).toBe(
      "VALUE contract-\xfe 0 5\r\nlatin\r\nEND\r\n",
    );
    c.close();
  });

  it("PUT then GET returns the bytes, flags and the version as ETag", async () => {
    const put = await fetch(`${base}/v1/kv/user%3A1?flags=42&ttl=100`, { method: "PUT", body: "hello" });
    expect(put.status).toBe(200);
    expect(await put.json()).toEqual({ stored: true, version: "1" });
    const get = await fetch(`${base}/v1/kv/user%3A1`);
    expect(get.status).toBe(200);
    expect(await get.text()).toBe("hello");
    expect(get.headers.get("etag")).toBe('"1"');
    expect(get.headers.get("x-flare-flags")).toBe("42");
    expect(get.headers.get("x-flare-expires")).not.toBeNull();
  });

  it("shares data with the memcached port", async () => {
    await fetch(`${base}/v1/kv/shared`, {
      method: "PUT",
      body: "from-http",
      headers: { "X-Flare-Flags": "7" },
    });
    const c = await RawClient.open(node.port);
    expect(await c.ask("gets shared\r\n", "END\r\n")).toBe("VALUE shared 7 9 1\r\nfrom-http\r\nEND\r\n");
    expect(await c.ask("set shared 0 0 3\r\ntcp\r\n")).toBe("STORED\r\n");
    c.close();
    expect(await (await fetch(`${base}/v1/kv/shared`)).text()).toBe("tcp");
  });

  it("If-Match is cas and If-None-Match: * is add", async () => {
    const first = await fetch(`${base}/v1/kv/c`, {
      method: "PUT",
      body: "1",
      headers: { "If-None-Match": "*" },
    });
    expect(first.status).toBe(200);
    const again = await fetch(`${base}/v1/kv/c`, {
      method: "PUT",
      body: "2",
      headers: { "If-None-Match": "*" },
    });
    expect(again.status).toBe(412);
    expect(await again.json()).toEqual({ error: { code: "EXISTS", message: expect.any(String) } });
    const etag = first.headers.get("etag") as string;
    const ok = await fetch(`${base}/v1/kv/c`, { method: "PUT", body: "3", headers: { "If-Match": etag } });
    expect(ok.status).toBe(200);
    const stale = await fetch(`${base}/v1/kv/c`, { method: "PUT", body: "4", headers: { "If-Match": etag } });
    expect(stale.status).toBe(412);
    expect((await stale.json()).error.code).toBe("CAS_MISMATCH");
    expect(await (await fetch(`${base}/v1/kv/c`)).text()).toBe("3");
  });

  it("DELETE, incr and decr", async () => {
    await fetch(`${base}/v1/kv/n`, { method: "PUT", body: "10" });
    expect(await (await fetch(`${base}/v1/kv/n/incr?by=5`, { method: "POST" })).json()).toEqual({
      value: "15",
    });
    expect(await (await fetch(`${base}/v1/kv/n/decr`, { method: "POST" })).json()).toEqual({ value: "14" });
    expect((await fetch(`${base}/v1/kv/n`, { method: "DELETE" })).status).toBe(204);
    const gone = await fetch(`${base}/v1/kv/n`, { method: "DELETE" });
    expect(gone.status).toBe(404);
    expect((await gone.json()).error.code).toBe("NOT_FOUND");
    expect((await fetch(`${base}/v1/kv/n`)).status).toBe(404);
  });

  it("rejects bad input with JSON errors", async () => {
    const cases: [string, RequestInit, number, string][] = [
      [`/v1/kv/${"k".repeat(251)}`, {}, 400, "BAD_KEY"],
      ["/v1/kv/a%20b", {}, 400, "BAD_KEY"],
      ["/v1/kv/k?ttl=soon", { method: "PUT", body: "x" }, 400, "BAD_REQUEST"],
      ["/v1/kv/k?flags=4294967296", { method: "PUT", body: "x" }, 400, "BAD_REQUEST"],
      ["/v1/kv/k", { method: "PUT", body: "x", headers: { "If-Match": "nope" } }, 400, "BAD_REQUEST"],
      ["/v1/kv/k", { method: "PUT", body: "x".repeat(65 * 1024) }, 413, "TOO_LARGE"],
      ["/v1/kv/k/incr?by=-1", { method: "POST" }, 400, "BAD_REQUEST"],
      ["/nowhere", {}, 404, "NO_ROUTE"],
    ];
    for (const [path, init, status, code] of cases) {
      const res = await fetch(`${base}${path}`, init);
      expect(res.status, path).toBe(status);
      expect((await res.json()).error.code, path).toBe(code);
    }
  });

  it("reads a chunked body (no Content-Length) and refuses one past item-size-max without keeping it", async () => {
    const chunked = (parts: string[]): RequestInit =>
      ({
        method: "PUT",
        body: new ReadableStream({
          start(ctl) {
            for (const p of parts) ctl.enqueue(new TextEncoder().encode(p));
            ctl.close();
          },
        }),
        duplex: "half",
      }) as RequestInit;
    expect((await fetch(`${base}/v1/kv/chunked`, chunked(["ab", "cd", "ef"]))).status).toBe(200);
    expect(await (await fetch(`${base}/v1/kv/chunked`)).text()).toBe("abcdef");
    const big = await fetch(`${base}/v1/kv/chunked`, chunked(Array(70).fill("x".repeat(1024))));
    expect(big.status).toBe(413);
    expect((await big.json()).error.code).toBe("TOO_LARGE");
    expect(await (await fetch(`${base}/v1/kv/chunked`)).text()).toBe("abcdef");
  });

  it("healthz", async () => {
    expect(await (await fetch(`${base}/healthz`)).json()).toEqual({ status: "ok", engine: "memory" });
  });
});
