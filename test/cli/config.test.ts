import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseConfigText, validateConfig } from "../../common/config.js";
import { flaredStorageKeys, forwardKeys, frontKeys } from "../../common/flared-config.js";
import type { Logger } from "../../common/log.js";
import { proxySchema } from "../../proxy/config.js";
import { nodeConfigSpec, nodeSchema } from "../../storage/config.js";
import { runFlare, startNodeProcess, stopAll } from "../helpers/processes.js";
import { RawClient } from "../helpers/raw-client.js";

afterAll(stopAll);

function recordingLogger(): Logger & { warnings: Record<string, unknown>[] } {
  const warnings: Record<string, unknown>[] = [];
  const log: Logger & { warnings: typeof warnings } = {
    warnings,
    debug() {},
    info() {},
    warn: (msg, fields) => warnings.push({ msg, ...fields }),
    error() {},
    child: () => log,
  };
  return log;
}

describe("node configuration", () => {
  it("a node's keys are the front's, the forwarding ones and its storage keys, which a proxy accepts with a notice", () => {
    const shared = { ...frontKeys, ...forwardKeys };
    const nodeOnly = Object.keys(nodeSchema.shape).filter((key) => !Object.hasOwn(shared, key));
    expect(new Set(nodeOnly)).toEqual(flaredStorageKeys);
    for (const key of Object.keys(shared)) expect(Object.hasOwn(proxySchema.shape, key), key).toBe(true);
  });

  it("reads Flare's key = value format with comments", () => {
    const raw = parseConfigText("# comment\n\nserver-port = 11211\n  max-connection=10  \n");
    expect(validateConfig(nodeConfigSpec, raw)).toMatchObject({ "server-port": 11211, "max-connection": 10 });
  });

  it("names the key of an unknown key or a bad value", () => {
    expect(() => validateConfig(nodeConfigSpec, new Map([["server-prot", "1"]]))).toThrow(
      "server-prot: unknown node config key",
    );
    expect(() => validateConfig(nodeConfigSpec, new Map([["server-port", "70000"]]))).toThrow(
      /^server-port: must be at most 65535/,
    );
    expect(() => validateConfig(nodeConfigSpec, new Map([["item-size-max", "big"]]))).toThrow(
      /^item-size-max: expected a size/,
    );
    expect(() => parseConfigText("just words")).toThrow("config:1: expected 'key = value'");
  });

  it("accepts Flare keys that mean nothing here, with one warning each", () => {
    const log = recordingLogger();
    const cfg = validateConfig(
      nodeConfigSpec,
      parseConfigText("thread-pool-size = 16\nstorage-ap = 4\n"),
      log,
    );
    expect(cfg["server-port"]).toBe(12121);
    expect(log.warnings.map((w) => w.key)).toEqual(["thread-pool-size", "storage-ap"]);
  });

  it("parses sizes with units", () => {
    const cfg = validateConfig(
      nodeConfigSpec,
      new Map([
        ["item-size-max", "2m"],
        ["memory-limit", "1g"],
      ]),
    );
    expect(cfg["item-size-max"]).toBe(2 * 1024 * 1024);
    expect(cfg["memory-limit"]).toBe(1024 ** 3);
  });

  it("the CLI stops with one line naming the key, and exit code 2", async () => {
    const { code, stderr } = await runFlare(["node", "--server-port", "nope"]);
    expect(code).toBe(2);
    expect(stderr.trim().split("\n")).toEqual([
      "flare: server-port: expected an integer from 0 to 65535 (got 'nope')",
    ]);
  });

  it("the CLI reads -f and lets flags override the file, and stops on SIGTERM", async () => {
    const dir = mkdtempSync(join(tmpdir(), "flare-cfg-"));
    const file = join(dir, "flared.conf");
    writeFileSync(file, `data-dir = ${dir}\nserver-port = 1\nmax-connection = 3\nlog-facility = local1\n`);
    const node = await startNodeProcess(["-f", file]);
    expect(node.port).not.toBe(1);
    expect(node.stderr()).toContain('"config key ignored"');
    const c = await RawClient.open(node.port);
    expect(await c.ask("stats settings\r\n", "END\r\n")).toContain("STAT maxconns 3\r\n");
    c.close();
    await node.stop();
    expect(node.proc.exitCode).toBe(0);
    expect(node.stderr()).toContain('"node stopped"');
  });
});
