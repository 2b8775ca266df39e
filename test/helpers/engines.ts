/** Opens a store on each engine for the shared suite; each store gets a fresh place to live. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { validateConfig } from "../../common/config.js";
import { createLogger } from "../../common/log.js";
import { nodeConfigSpec } from "../../storage/config.js";
import { Counters } from "../../storage/counters.js";
import { openEngine } from "../../storage/engines/open.js";
import { Store } from "../../storage/store.js";

export type EngineKind = "memory" | "leveldb" | "redis";

export interface OpenedStore {
  store: Store;
  close(): Promise<void>;
}

let seq = 0;

export async function openStore(
  kind: EngineKind,
  opts: { redisUrl?: string; memoryLimit?: string; tombstones?: number; dataDir?: string } = {},
): Promise<OpenedStore> {
  const dir = opts.dataDir ?? mkdtempSync(join(tmpdir(), "flare-engine-"));
  const raw = new Map<string, string>([
    ["storage-type", kind],
    ["data-dir", dir],
    ["storage-cache-size", String(opts.tombstones ?? 1000)],
    ["redis-prefix", `test:${process.pid}:${++seq}:`],
  ]);
  if (opts.redisUrl) raw.set("redis-url", opts.redisUrl);
  if (opts.memoryLimit) raw.set("memory-limit", opts.memoryLimit);
  const config = validateConfig(nodeConfigSpec, raw);
  const { engine, tombstones } = await openEngine(config, createLogger());
  const store = new Store(engine, tombstones, new Counters());
  return {
    store,
    async close() {
      store.close();
      await engine.close();
      if (opts.dataDir === undefined) rmSync(dir, { recursive: true, force: true });
    },
  };
}
