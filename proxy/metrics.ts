/** The proxy's /metrics: requests and their outcome by command, retries, unreachable nodes, the map. */
import type { Registry } from "prom-client";
import { connectionMetrics, counterFrom, type LatencyRecorder, mapMetrics } from "../common/metrics.js";
import type { ClusterMember } from "../protocol/cluster-member.js";
import type { ServerCounters } from "../protocol/memcache/server.js";
import type { ProxyCommands } from "./memcache-front.js";

export function registerProxyMetrics(
  registry: Registry,
  commands: ProxyCommands,
  counters: ServerCounters,
  latency: LatencyRecorder,
  member: ClusterMember,
): void {
  const e = commands.events;
  counterFrom(
    registry,
    "flare_command_results_total",
    "memcached requests through the proxy by command: ok (a node answered) or failed (SERVER_ERROR from the proxy).",
    ["command", "result"],
    function* () {
      for (const [command, count] of latency.counts()) {
        const failed = e.failed.get(command) ?? 0;
        yield [{ command, result: "ok" }, count - failed];
        yield [{ command, result: "failed" }, failed];
      }
    },
  );
  counterFrom(
    registry,
    "flare_proxy_retries_total",
    "Reads sent to another replica, writes that waited for a new master.",
    ["kind"],
    () => [
      [{ kind: "read_other_replica" }, e.readRetries],
      [{ kind: "write_new_master" }, e.writeRetries],
    ],
  );
  counterFrom(
    registry,
    "flare_proxy_unreachable_total",
    "Requests a node did not answer, by node.",
    ["node"],
    () => [...e.unreachable].map(([node, n]) => [{ node }, n]),
  );
  connectionMetrics(registry, counters.connections);
  mapMetrics(
    registry,
    () => member.version,
    () => member.map,
  );
}
