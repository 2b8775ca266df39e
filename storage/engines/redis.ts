/**
 * Redis engine on ioredis: each item is one Redis string (record.ts layout) under `<prefix><key>`,
 * with Redis's own expiry so memory is reclaimed (expiry is also checked on read). Commands issued
 * in the same tick share one round trip (auto-pipelining). While Redis is unreachable every call
 * fails at once (no offline queue) or after `commandTimeout`, and the client reconnects by itself.
 */
import { Redis } from "ioredis";
import { ServerError } from "../../common/errors.js";
import type { Logger } from "../../common/log.js";
import type { AsyncEngine, EngineStats, Item } from "../engine.js";
import { decodeItem, encodeItem } from "./record.js";

export interface RedisEngineOptions {
  url: string;
  prefix: string;
  /** Longest wait for one Redis call before the command fails. */
  commandTimeoutMs: number;
}

export class RedisEngine implements AsyncEngine {
  readonly kind = "redis";
  readonly sync = false;
  private readonly client: Redis;
  private up = false;

  private constructor(
    private readonly options: RedisEngineOptions,
    log: Logger,
  ) {
    this.client = new Redis(options.url, {
      enableAutoPipelining: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: options.commandTimeoutMs,
      connectTimeout: options.commandTimeoutMs,
      lazyConnect: true,
      retryStrategy: (times) => Math.min(times * 100, 1000),
    });
    this.client.on("ready", () => {
      if (!this.up) log.info("redis connected", { url: options.url });
      this.up = true;
    });
    this.client.on("error", (err: Error) => {
      if (this.up) log.warn("redis unavailable", { url: options.url, err: err.message });
      this.up = false;
    });
    this.client.on("close", () => {
      if (this.up) log.warn("redis unavailable", { url: options.url, err: "connection closed" });
      this.up = false;
    });
  }

  static async open(options: RedisEngineOptions, log: Logger): Promise<RedisEngine> {
    const engine = new RedisEngine(options, log);
    try {
      await engine.client.connect();
    } catch (err) {
      engine.client.disconnect();
      throw new ServerError(
        "ENGINE_FAILURE",
        `cannot reach redis at ${options.url}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    return engine;
  }

  async get(key: string): Promise<Item | undefined> {
    const raw = await this.call(() => this.client.getBuffer(this.key(key)));
    return raw === null ? undefined : decodeItem(raw);
  }

  async put(key: string, item: Item): Promise<void> {
    const k = this.key(key);
    const value = encodeItem(item);
    await this.call(() =>
      item.expiresAt === 0
        ? this.client.set(k, value)
        : this.client.set(k, value, "PXAT", Math.max(1, Math.ceil(item.expiresAt))),
    );
  }

  async delete(key: string): Promise<boolean> {
    return (await this.call(() => this.client.del(this.key(key)))) > 0;
  }

  async clear(): Promise<void> {
    let cursor = "0";
    do {
      const [next, keys] = await this.call(() =>
        this.client.scanBuffer(cursor, "MATCH", this.pattern(), "COUNT", 1000),
      );
      cursor = next.toString();
      if (keys.length > 0) await this.call(() => this.client.unlink(...keys));
    } while (cursor !== "0");
  }

  async *scan(): AsyncIterable<[string, Item]> {
    let cursor = "0";
    const skip = Buffer.byteLength(this.options.prefix, "latin1");
    do {
      const [next, keys] = await this.call(() =>
        this.client.scanBuffer(cursor, "MATCH", this.pattern(), "COUNT", 1000),
      );
      cursor = next.toString();
      if (keys.length === 0) continue;
      const values = await this.call(() => this.client.mgetBuffer(...keys));
      for (let i = 0; i < keys.length; i++) {
        const raw = values[i];
        if (raw) yield [(keys[i] as Buffer).latin1Slice(skip, (keys[i] as Buffer).length), decodeItem(raw)];
      }
    } while (cursor !== "0");
  }

  stats(): EngineStats {
    // Redis owns the memory and may be shared: per-prefix counts would need a full SCAN.
    return { items: 0, bytes: 0, limitBytes: 0, evictions: 0 };
  }

  async healthy(): Promise<boolean> {
    return this.client.status === "ready" && (await this.client.ping()) === "PONG";
  }

  async close(): Promise<void> {
    this.client.disconnect();
  }

  private key(key: string): Buffer {
    return Buffer.from(this.options.prefix + key, "latin1");
  }

  /** SCAN MATCH pattern for everything under the prefix (glob characters in it escaped). */
  private pattern(): string {
    return `${this.options.prefix.replace(/[*?[\]\\]/g, "\\$&")}*`;
  }

  private async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw new ServerError("ENGINE_FAILURE", "storage unavailable", { cause: err });
    }
  }
}
