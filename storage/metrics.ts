/** A storage node's /metrics: what `stats` shows, as Prometheus series, read when scraped. */
import type { Registry } from "prom-client";
import { connectionMetrics, counterFrom, gaugeFrom, mapMetrics } from "../common/metrics.js";
import type { ClusterMember } from "../protocol/cluster-member.js";
import type { ServerCounters } from "../protocol/memcache/server.js";
import type { Counters } from "./counters.js";
import type { Replicator } from "./replicator.js";
import type { Store } from "./store.js";

/** memcached's per-command outcome counters, as {command, result} pairs. */
const RESULTS: [command: string, result: string, counter: keyof Counters][] = [
  ["get", "hit", "get_hits"],
  ["get", "miss", "get_misses"],
  ["get", "expired", "get_expired"],
  ["set", "stored", "cmd_set"],
  ["delete", "hit", "delete_hits"],
  ["delete", "miss", "delete_misses"],
  ["incr", "hit", "incr_hits"],
  ["incr", "miss", "incr_misses"],
  ["decr", "hit", "decr_hits"],
  ["decr", "miss", "decr_misses"],
  ["cas", "hit", "cas_hits"],
  ["cas", "miss", "cas_misses"],
  ["cas", "badval", "cas_badval"],
  ["touch", "hit", "touch_hits"],
  ["touch", "miss", "touch_misses"],
  ["flush_all", "done", "cmd_flush"],
];

export function registerNodeMetrics(
  registry: Registry,
  store: Store,
  info: ServerCounters,
  member: ClusterMember | undefined,
  replicator: () => Replicator | undefined,
): void {
  const c = store.counters;
  counterFrom(
    registry,
    "flare_command_results_total",
    "Commands by outcome (memcached's stats counters; set counts every storage command), TCP and HTTP.",
    ["command", "result"],
    function* () {
      for (const [command, result, counter] of RESULTS) yield [{ command, result }, c[counter] as number];
    },
  );
  connectionMetrics(registry, info.connections);
  counterFrom(
    registry,
    "flare_traffic_bytes_total",
    "Bytes read from and written to clients.",
    ["direction"],
    () => [
      [{ direction: "read" }, info.traffic.bytesRead],
      [{ direction: "written" }, info.traffic.bytesWritten],
    ],
  );
  gaugeFrom(registry, "flare_items", "Items stored.", [], () => [[{}, store.engine.stats().items]]);
  gaugeFrom(registry, "flare_item_bytes", "Bytes of items stored.", [], () => [
    [{}, store.engine.stats().bytes],
  ]);
  counterFrom(registry, "flare_evictions_total", "Items evicted for memory.", [], () => [
    [{}, store.engine.stats().evictions],
  ]);
  if (member === undefined) return;
  gaugeFrom(
    registry,
    "flare_replication_lag",
    "Writes a slave has not acknowledged yet, by slave (on a master).",
    ["slave"],
    () => Object.entries(replicator()?.lag() ?? {}).map(([slave, lag]) => [{ slave }, lag]),
  );
  gaugeFrom(
    registry,
    "flare_replication_seq",
    "The master's last replicated write this node applied.",
    [],
    () => [[{}, member.replicationSeq]],
  );
  mapMetrics(
    registry,
    () => member.version,
    () => member.map,
  );
}
