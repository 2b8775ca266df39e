/**
 * The HTTP key API's contract, checked the same way against a node and through the proxy: one API,
 * one shape. `base` is `http://host:port/v1/kv`; the keys used start with `contract-`.
 */
import { expect } from "vitest";

export async function checkHttpContract(base: string): Promise<void> {
  const put = await fetch(`${base}/contract-a?flags=7`, { method: "PUT", body: "hello" });
  expect(put.status).toBe(200);
  const stored = (await put.json()) as { stored: boolean; version: string };
  expect(stored).toEqual({ stored: true, version: expect.stringMatching(/^\d+$/) });
  const tag = `"${stored.version}"`;
  expect(put.headers.get("etag")).toBe(tag);

  // GET and HEAD: the length is told either way; a current If-None-Match is 304, weak or strong.
  const get = await fetch(`${base}/contract-a`);
  expect(await get.text()).toBe("hello");
  expect(get.headers.get("etag")).toBe(tag);
  expect(get.headers.get("x-flare-flags")).toBe("7");
  const head = await fetch(`${base}/contract-a`, { method: "HEAD" });
  expect(head.status).toBe(200);
  expect(head.headers.get("content-length")).toBe("5");
  expect(head.headers.get("etag")).toBe(tag);
  for (const inm of [tag, `W/${tag}`, `"1", ${tag}`, "*"]) {
    const cached = await fetch(`${base}/contract-a`, { headers: { "If-None-Match": inm } });
    expect(cached.status, inm).toBe(304);
    expect(cached.headers.get("etag")).toBe(tag);
  }
  expect((await fetch(`${base}/contract-a`, { headers: { "If-None-Match": '"999999"' } })).status).toBe(200);

  // If-Match compares strongly: a weak ETag never matches, and nothing is written.
  const weak = await fetch(`${base}/contract-a`, {
    method: "PUT",
    body: "weak",
    headers: { "If-Match": `W/${tag}` },
  });
  expect(weak.status).toBe(412);
  expect(((await weak.json()) as { error: { code: string } }).error.code).toBe("CAS_MISMATCH");
  expect(await (await fetch(`${base}/contract-a`)).text()).toBe("hello");
  // If-Match: * replaces only what exists.
  expect(
    (await fetch(`${base}/contract-none`, { method: "PUT", body: "x", headers: { "If-Match": "*" } })).status,
  ).toBe(412);
  const replaced = await fetch(`${base}/contract-a`, {
    method: "PUT",
    body: "v2",
    headers: { "If-Match": "*" },
  });
  expect(replaced.status).toBe(200);
  const current = replaced.headers.get("etag") as string;

  // DELETE honours If-Match as PUT does.
  const staleDelete = await fetch(`${base}/contract-a`, { method: "DELETE", headers: { "If-Match": tag } });
  expect(staleDelete.status).toBe(412);
  expect(((await staleDelete.json()) as { error: { code: string } }).error.code).toBe("CAS_MISMATCH");
  expect(
    (await fetch(`${base}/contract-a`, { method: "DELETE", headers: { "If-Match": `W/${current}` } })).status,
  ).toBe(412);
  expect(await (await fetch(`${base}/contract-a`)).text()).toBe("v2");
  expect(
    (await fetch(`${base}/contract-a`, { method: "DELETE", headers: { "If-Match": current } })).status,
  ).toBe(204);
  expect(
    (await fetch(`${base}/contract-a`, { method: "DELETE", headers: { "If-Match": current } })).status,
  ).toBe(412);
  expect((await fetch(`${base}/contract-a`, { method: "DELETE" })).status).toBe(404);

  // Methods a route does not take: 405 with Allow; OPTIONS tells them.
  for (const method of ["PATCH", "POST"]) {
    const res = await fetch(`${base}/contract-a`, { method });
    expect(res.status, method).toBe(405);
    expect(res.headers.get("allow")).toBe("GET, PUT, DELETE, HEAD, OPTIONS");
  }
  const options = await fetch(`${base}/contract-a`, { method: "OPTIONS" });
  expect(options.status).toBe(204);
  expect(options.headers.get("allow")).toBe("GET, PUT, DELETE, HEAD, OPTIONS");
  const getIncr = await fetch(`${base}/contract-a/incr`);
  expect(getIncr.status).toBe(405);
  expect(getIncr.headers.get("allow")).toBe("POST, OPTIONS");

  // Keys are the percent-decoded bytes: any byte is reachable, a malformed escape is a 400, and
  // an escaped and a plain spelling of one key name one item.
  expect((await fetch(`${base}/contract-a%ZZ`)).status).toBe(400);
  expect((await fetch(`${base}/contract-%FE%00`)).status).toBe(400);
  expect((await fetch(`${base}/contract-%FE`, { method: "PUT", body: "latin" })).status).toBe(200);
  expect(await (await fetch(`${base}/contract-%fe`)).text()).toBe("latin");
  expect((await fetch(`${base}/contract-%25FE`)).status).toBe(404);
  expect((await fetch(`${base}/contract-b`, { method: "PUT", body: "plain" })).status).toBe(200);
  expect(await (await fetch(`${base}/contract-%62`)).text()).toBe("plain");
}
