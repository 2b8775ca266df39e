/**
 * libmemcached's own tools against a node and the proxy: they read `version` as numbers before
 * stats and ping, so a version they cannot parse made them fail; memcslap's mget sends get lines
 * of thousands of keys.
 */
import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { admin, type SeedLayout, seedLayout } from "../helpers/cluster.js";
import { stopAll } from "../helpers/processes.js";
import { requireCommand } from "../helpers/tools.js";

afterAll(stopAll);

describe("libmemcached tools", () => {
  let c: SeedLayout;
  beforeAll(async () => {
    requireCommand("memcstat", "libmemcached-tools");
    c = await seedLayout("tools-test-secret");
  }, 60_000);
  afterAll(async () => c?.stop());

  it("version is numeric; memcping and memcstat work against a node and the proxy", async () => {
    for (const port of [c.master.port, c.proxy.port]) {
      expect(await admin(port, "version")).toBe("VERSION 1.6.18\r\n");
      const servers = `--servers=127.0.0.1:${port}`;
      expect(() => execFileSync("memcping", [servers], { stdio: "pipe" })).not.toThrow();
      const stats = execFileSync("memcstat", [servers], { encoding: "utf8" });
      expect(stats).toContain(`Server: 127.0.0.1 (${port})`);
      expect(stats).toMatch(/\tversion: 1\.6\.18\n/);
      expect(stats).toMatch(/\tflare_ts_version: flare-ts-\d+\.\d+\.\d+\n/);
    }
  });

  it("memcslap --test=mget (multi-get lines of thousands of keys) runs against a node and the proxy", () => {
    for (const port of [c.master.port, c.proxy.port]) {
      const out = execFileSync(
        "memcslap",
        [`--servers=127.0.0.1:${port}`, "--test=mget", "--concurrency=2", "--execute-number=2000"],
        { encoding: "utf8", timeout: 60_000 },
      );
      expect(out).toMatch(/Time to mget\s+4000 keys by\s+2 threads/);
    }
  });

  it("memcached-tool's display, stats and settings modes finish against a node and the proxy", () => {
    const tool = "/usr/share/memcached/scripts/memcached-tool";
    requireCommand(tool, "memcached");
    for (const port of [c.master.port, c.proxy.port]) {
      for (const mode of ["display", "stats", "settings"]) {
        const out = execFileSync("perl", [tool, `127.0.0.1:${port}`, mode], {
          encoding: "utf8",
          timeout: 10_000,
        });
        if (mode !== "display") expect(out, mode).toMatch(/\S+\s+\S+/);
      }
    }
  });
});
