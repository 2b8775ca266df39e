/** Starts an index service: the map, its monitors, the flarei text protocol and the HTTP API. */

import { clusterSecret, warnIfOpen } from "../common/cluster-secret.js";
import { type HttpServer, serveHttp } from "../common/http-serve.js";
import { LineServer } from "../common/line-server.js";
import type { Logger } from "../common/log.js";
import { indexCommands } from "./admin-commands.js";
import type { IndexConfig } from "./config.js";
import { createIndexHttpApp } from "./http-app.js";
import { IndexService } from "./service.js";

export interface RunningIndex {
  port: number;
  httpPort: number | undefined;
  service: IndexService;
  stop(): Promise<void>;
}

export async function startIndex(config: IndexConfig, log: Logger): Promise<RunningIndex> {
  const secret = clusterSecret(config);
  const service = new IndexService(config, secret, log);
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
  warnIfOpen(secret, config["bind-address"], log);
  log.info("index started", {
    port: address.port,
    httpPort: http?.address.port,
    mapVersion: service.map.version,
  });
  const lines = server;
  return {
    port: address.port,
    httpPort: http?.address.port,
    service,
    async stop() {
      service.stop();
      await Promise.all([lines.close(), http?.close()]);
      log.info("index stopped", { port: address.port });
    },
  };
}
