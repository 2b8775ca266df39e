/** A storage node: one engine, the store above it, and its TCP and HTTP front ends. */
import { ConfigError } from "../common/errors.js";
import { type HttpServer, serveHttp } from "../common/http-serve.js";
import type { Logger } from "../common/log.js";
import { VERSION } from "../common/version.js";
import type { NodeConfig } from "./config.js";
import { Counters } from "./counters.js";
import { openEngine } from "./engines/open.js";
import { createNodeHttpApp } from "./http-app.js";
import { MemcacheCommands, type NodeInfo } from "./memcache-commands.js";
import { MemcacheServer } from "./memcache-server.js";
import { Store } from "./store.js";

export interface RunningNode {
  readonly port: number;
  readonly httpPort: number | undefined;
  readonly store: Store;
  stop(): Promise<void>;
}

export async function startNode(config: NodeConfig, log: Logger): Promise<RunningNode> {
  if (config["index-servers"] !== undefined || config["index-server-name"] !== undefined) {
    throw new ConfigError(
      "index-server-name: joining a cluster needs the index service, which this build does not have yet",
    );
  }
  const { engine, tombstones } = await openEngine(config, log);
  const store = new Store(engine, tombstones, new Counters());
  const info: NodeInfo = {
    version: VERSION,
    startedAt: Date.now(),
    maxConnections: config["max-connection"],
    itemSizeMax: config["item-size-max"],
    connections: { current: 0, total: 0, rejected: 0 },
    traffic: { bytesRead: 0, bytesWritten: 0 },
    mapVersion: () => 0,
  };
  const limits = {
    maxLine: config["max-line-length"],
    maxValue: config["item-size-max"],
    maxKey: config["key-max-length"],
  };
  const tcp = new MemcacheServer(
    {
      host: config["bind-address"],
      port: config["server-port"],
      backlog: config["back-log"],
      maxConnections: config["max-connection"],
      readTimeoutSeconds: config["net-read-timeout"],
      limits,
    },
    new MemcacheCommands(store, info, log),
    info,
    log,
  );
  const address = await tcp.listen();
  let http: HttpServer | undefined;
  if (config["http-port"] !== undefined) {
    const app = createNodeHttpApp(store, { maxKey: limits.maxKey, maxValue: limits.maxValue }, log);
    http = await serveHttp(app, config["bind-address"], config["http-port"]);
  }
  log.info("node started", {
    engine: engine.kind,
    port: address.port,
    httpPort: http?.address.port,
    mode: "standalone",
  });
  const sweepSeconds = config["expiry-sweep-interval"];
  const sweeper =
    sweepSeconds > 0 && engine.sync
      ? setInterval(() => {
          store.sweepExpired().catch((err: unknown) => log.warn("expiry sweep failed", { err }));
        }, sweepSeconds * 1000).unref()
      : undefined;
  const running = store;
  return {
    port: address.port,
    httpPort: http?.address.port,
    store: running,
    async stop() {
      clearInterval(sweeper);
      await Promise.all([tcp.close(), http?.close()]);
      running.close();
      await engine.close();
      log.info("node stopped", { port: address.port });
    },
  };
}
