/** `flare proxy`: the proxy on Node, a memcached TCP front that follows the index's maps. */
import { Hono } from "hono";
import { clusterSecret, warnIfOpen } from "../common/cluster-secret.js";
import { ConfigError } from "../common/errors.js";
import { indexServers } from "../common/flared-config.js";
import { type HttpServer, serveHttp } from "../common/http-serve.js";
import type { Logger } from "../common/log.js";
import { createRegistry, httpMetrics, LatencyRecorder, metricsRoute } from "../common/metrics.js";
import { VERSION } from "../common/version.js";
import { ClusterMember } from "../protocol/cluster-member.js";
import { partitioning } from "../protocol/key-hash.js";
import { MemcacheServer, newServerCounters } from "../protocol/memcache/server.js";
import { type NodeEntry, nodeKey } from "../protocol/node-map.js";
import type { ProxyConfig } from "./config.js";
import { httpForwarder, mountKvProxy } from "./http-app.js";
import { ProxyCommands } from "./memcache-front.js";
import { registerProxyMetrics } from "./metrics.js";
import { Router } from "./router.js";
import { HttpTransport } from "./transports/http-transport.js";
import { nodeFetch } from "./transports/node-fetch.js";

export interface RunningProxy {
  port: number;
  httpPort: number | undefined;
  stop(): Promise<void>;
}

/** A node is reported to the index at most this often. */
const SUSPECT_EVERY_MS = 1000;

export async function startProxy(config: ProxyConfig, log: Logger): Promise<RunningProxy> {
  const indexes = indexServers(config);
  if (indexes.length === 0) throw new ConfigError("index-server-name: a proxy needs an index to follow");
  const secret = clusterSecret(config);
  const member = new ClusterMember(
    {
      indexes,
      serverName: config["server-name"],
      registerTimeoutMs: config["index-register-timeout"] * 1000,
      credentials: { secret, role: "proxy" },
    },
    log,
  );
  const registry = createRegistry("proxy");
  const latency = new LatencyRecorder(
    registry,
    "flare_request_duration_seconds",
    "memcached requests through the proxy by command: from parsed to reply ready (node round trips, retries and waits included).",
  );
  const counters = newServerCounters(latency);
  const reported = new Map<string, number>();
  const suspect = (node: NodeEntry): void => {
    const key = nodeKey(node.host, node.port);
    const now = Date.now();
    if (now - (reported.get(key) ?? 0) < SUSPECT_EVERY_MS) return;
    reported.set(key, now);
    log.warn("node unreachable from proxy", { node: key });
    member.tellIndex(`suspect ${node.host} ${node.port}`).catch(() => "");
  };
  const router = new Router();
  const commands = new ProxyCommands(
    router,
    member,
    {
      concurrency: config["proxy-concurrency"],
      requestTimeoutMs: config["proxy-request-timeout"],
      writeWaitMs: config["proxy-write-wait"],
      version: VERSION,
      maxConnections: config["max-connection"],
    },
    counters,
    log,
    suspect,
  );
  registerProxyMetrics(registry, commands, counters, latency, member);
  const server = new MemcacheServer(
    {
      host: config["bind-address"],
      port: config["server-port"],
      backlog: config["back-log"],
      maxConnections: config["max-connection"],
      readTimeoutSeconds: config["net-read-timeout"],
      secret,
      keepRaw: true,
      limits: {
        maxLine: config["max-line-length"],
        maxValue: config["item-size-max"],
        maxKey: config["key-max-length"],
      },
    },
    commands,
    counters,
    log,
  );
  const address = await server.listen();
  let http: HttpServer | undefined;
  if (config["http-port"] !== undefined) {
    const app = new Hono();
    app.use(httpMetrics(registry));
    app.get("/metrics", metricsRoute(registry));
    app.get("/healthz", (c) => c.json({ status: "ok", mapVersion: member.version }));
    const forwarder = httpForwarder(
      router,
      new HttpTransport(config["proxy-request-timeout"], nodeFetch()),
      commands.maps,
      (node, err) => {
        commands.hooks.unreachable(node, err);
      },
      config["proxy-write-wait"],
    );
    mountKvProxy(
      app,
      () => forwarder,
      { maxKey: config["key-max-length"], maxValue: config["item-size-max"] },
      log,
    );
    http = await serveHttp(app, config["bind-address"], config["http-port"]);
  }
  member.listening(address.port);
  try {
    await member.register();
    const { algorithm, resolver } = partitioning(member.meta);
    router.use(algorithm, resolver);
  } catch (err) {
    await Promise.all([server.close(), http?.close()]);
    throw err;
  }
  warnIfOpen(secret, config["bind-address"], log);
  log.info("proxy started", {
    port: address.port,
    httpPort: http?.address.port,
    index: indexes.map((i) => `${i.host}:${i.port}`).join(","),
    mapVersion: member.version,
  });
  return {
    port: address.port,
    httpPort: http?.address.port,
    async stop() {
      await member.leave();
      commands.close();
      await Promise.all([server.close(), http?.close()]);
      log.info("proxy stopped", { port: address.port });
    },
  };
}
