/**
 * Builds the engine a node's config asks for, with the tombstones that go with it. The on-disk and
 * Redis engines (and their libraries) are loaded only when asked for: a memory node's process
 * stays smaller.
 */
import { ConfigError } from "../../common/errors.js";
import type { Logger } from "../../common/log.js";
import type { NodeConfig } from "../config.js";
import type { Engine } from "../engine.js";
import { Tombstones } from "../tombstones.js";
import { MemoryEngine } from "./memory.js";

export async function openEngine(
  config: NodeConfig,
  log: Logger,
): Promise<{ engine: Engine; tombstones: Tombstones }> {
  const limit = config["storage-cache-size"];
  switch (config["storage-type"]) {
    case "memory": {
      const tombstones = new Tombstones(limit);
      const engine = new MemoryEngine({
        limitBytes: config["memory-limit"],
        // An evicted item's version must not be reused.
        onEvict: (version) => tombstones.raiseFloor(version),
      });
      return { engine, tombstones };
    }
    case "tch":
    case "tcb":
    case "kch":
    case "leveldb": {
      if (config["storage-type"] !== "leveldb") {
        log.info("storage-type mapped", {
          from: config["storage-type"],
          to: "leveldb",
          reason: "Flare's on-disk stores are served by leveldb",
        });
      }
      const dir = config["data-dir"];
      if (dir === undefined) throw new ConfigError("data-dir: required with storage-type = leveldb");
      const { LevelDbEngine } = await import("./leveldb.js");
      const { engine, tombstones: kept, floor } = await LevelDbEngine.open(dir);
      const tombstones = new Tombstones(limit, engine);
      tombstones.load(kept, floor);
      return { engine, tombstones };
    }
    case "redis": {
      const prefix = config["redis-prefix"] ?? `flare:${config["server-name"]}:${config["server-port"]}:`;
      const { RedisEngine } = await import("./redis.js");
      const engine = await RedisEngine.open(
        { url: config["redis-url"], prefix, commandTimeoutMs: config["redis-timeout"] },
        log,
      );
      return { engine, tombstones: new Tombstones(limit) };
    }
  }
}
