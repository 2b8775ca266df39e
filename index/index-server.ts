/** Starts an index service: the map, its monitors, the flarei text protocol and the HTTP API. */

import { clusterSecret, warnIfOpen } from "../common/cluster-secret.js";
import { ConfigError } from "../common/errors.js";
import { type HttpServer, serveHttp } from "../common/http-serve.js";
import { LineServer } from "../common/line-server.js";
import type { Logger } from "../common/log.js";
import { indexCommands } from "./admin-commands.js";
import type { IndexConfig } from "./config.js";
import { EtcdMapStore, parseEtcdUrl } from "./etcd-store.js";
import { createIndexHttpApp } from "./http-app.js";
import { FileMapStore, type MapStore } from "./map-store.js";
import { IndexService } from "./service.js";

export interface RunningIndex {
  port: number;
  httpPort: number | undefined;
  service: IndexService;
  stop(): Promise<void>;
}

/** The map's store that `index-db` names (the file in data-dir by default). */
function mapStore(config: IndexConfig, log: Logger): MapStore {
  const db = config["index-db"];
  if (db?.startsWith("etcd://")) {
    const etcd = parseEtcdUrl(db);
    if (etcd === undefined)
      throw new ConfigError(`index-db: expected etcd://host:port[,host:port...][/prefix] (got '${db}')`);
    return new EtcdMapStore({ ...etcd, leaseTtl: config["etcd-lease-ttl"] }, log);
  }
  const dir = db === undefined ? config["data-dir"] : db.slice("file://".length);
  if (dir === undefined)
    throw new ConfigError("data-dir: an index needs a directory for its node map (or index-db)");
  return new FileMapStore(dir);
}

export async function startIndex(config: IndexConfig, log: Logger): Promise<RunningIndex> {
  const secret = clusterSecret(config);
  const store = mapStore(config, log);
  const service = new IndexService(config, secret, log, store);
  const startedAt = Date.now();
  let server: LineServer | undefined;
  server = new LineServer(
    {
      host: config["bind-address"],
      port: config["server-port"],
      maxConnections: config["max-connection"],
      idleTimeoutSeconds: config["net-read-timeout"],
      maxLine: 64 * 1024,
      secret,
    },
    indexCommands(service, { startedAt, connections: () => server?.connections ?? 0, secret }),
  );
  const address = await server.listen();
  let http: HttpServer | undefined;
  if (config["http-port"] !== undefined) {
    http = await serveHttp(
      createIndexHttpApp(
        service,
        [config["admin-token"], secret.token].filter((t): t is string => t !== undefined),
      ),
      config["bind-address"],
      config["http-port"],
    );
  }
  try {
    await service.start(`${config["server-name"]}:${address.port}`);
  } catch (err) {
    await Promise.all([server.close(), http?.close(), store.close()]);
    throw err;
  }
  warnIfOpen(secret, config["bind-address"], log);
  log.info("index started", {
    port: address.port,
    httpPort: http?.address.port,
    mapVersion: service.map.version,
    store: store.kind,
    leading: service.leading,
  });
  const lines = server;
  return {
    port: address.port,
    httpPort: http?.address.port,
    service,
    async stop() {
      service.stop();
      await Promise.all([lines.close(), http?.close(), store.close()]);
      log.info("index stopped", { port: address.port });
    },
  };
}
