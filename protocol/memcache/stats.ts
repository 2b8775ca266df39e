/**
 * `stats` and its sub-reports, answered alike by a node and the proxy, as memcached does, so tools
 * that read until END (memcached-tool, libmemcached) never wait for a reply that will not come.
 * Each role supplies its own figures; the slab, item and size reports are empty: no slab allocator.
 */
import { PROTOCOL_VERSION } from "../../common/version.js";
import type { ReplyBuffer } from "./reply.js";
import type { ServerCounters } from "./server.js";

export type StatPairs = [string, string | number][];

/** What a role reports. */
export interface StatsSource {
  /** The memcached front's counters and open connections. */
  server(): ServerCounters;
  general(): StatPairs;
  settings(): StatPairs;
  /** `stats reset`: zero the role's counters (the front's are zeroed here). */
  reset(): void;
  /** `stats nodes` (Flare): the node map as this process sees it. */
  nodes(): string[];
  /** `stats threads slave` (Flare): a master's replication streams, and the writes each has queued. */
  replication(): { peer: string; queued: number }[];
}

/** Who a process is, in memcached's order: the head of every role's `stats`. */
export function processStats(
  startedAt: number,
  version: string,
  maxConnections: number,
  server: ServerCounters,
): StatPairs {
  const now = Date.now();
  const usage = process.resourceUsage();
  const c = server.connections;
  return [
    ["pid", process.pid],
    ["uptime", Math.floor((now - startedAt) / 1000)],
    ["time", Math.floor(now / 1000)],
    ["version", PROTOCOL_VERSION],
    ["flare_ts_version", version],
    ["pointer_size", 64],
    ["rusage_user", seconds(usage.userCPUTime)],
    ["rusage_system", seconds(usage.systemCPUTime)],
    ["max_connections", maxConnections],
    ["curr_connections", c.current],
    ["total_connections", c.total],
    ["rejected_connections", c.rejected],
    ["connection_structures", c.current],
  ];
}

/** The front's traffic and connection handling, in memcached's order (after the command counters). */
export function frontStats(server: ServerCounters): StatPairs {
  return [
    ["store_too_large", server.traffic.storeTooLarge],
    ["bytes_read", server.traffic.bytesRead],
    ["bytes_written", server.traffic.bytesWritten],
    ["accepting_conns", 1],
    // Connections past max-connection are refused one by one; the listener is never disabled.
    ["listen_disabled_num", 0],
    ["threads", 1],
    ["conn_yields", 0],
    ["idle_kicks", server.connections.idleKicks],
  ];
}

function seconds(micros: number): string {
  return (micros / 1e6).toFixed(6);
}

export function writeStats(args: readonly string[], source: StatsSource, out: ReplyBuffer): void {
  const [sub, ...rest] = args;
  switch (sub) {
    case "detail":
      if (rest.length === 1 && (rest[0] === "on" || rest[0] === "off")) out.line("OK");
      else if (rest.length === 1 && rest[0] === "dump") out.line("END");
      else out.line("CLIENT_ERROR usage: stats detail on|off|dump");
      return;
    case "cachedump":
      out.line("END");
      return;
  }
  if (sub === "threads" && rest.length <= 1) {
    if (threads(source, rest[0], out)) out.line("END");
    return;
  }
  if (rest.length > 0) {
    out.line("ERROR");
    return;
  }
  switch (sub) {
    case undefined:
      pairs(source.general(), out);
      break;
    case "settings":
      pairs(source.settings(), out);
      break;
    case "reset": {
      const { traffic, connections } = source.server();
      traffic.bytesRead = traffic.bytesWritten = traffic.storeTooLarge = 0;
      connections.total = connections.rejected = connections.idleKicks = 0;
      source.reset();
      out.line("RESET");
      return;
    }
    case "nodes":
      for (const line of source.nodes()) out.line(line);
      break;
    case "items":
    case "slabs":
    case "sizes":
      break;
    case "conns":
      conns(source.server(), out);
      break;
    default:
      out.line("ERROR");
      return;
  }
  out.line("END");
}

function pairs(list: StatPairs, out: ReplyBuffer): void {
  for (const [name, value] of list) out.line(`STAT ${name} ${value}`);
}

/** memcached's `stats conns`: the listener, then each client connection. */
function conns(server: ServerCounters, out: ReplyBuffer): void {
  const listing = server.listing?.();
  if (listing === undefined) return;
  const now = performance.now();
  out.line(`STAT 0:addr tcp:${listing.listen}`);
  out.line("STAT 0:state conn_listening");
  out.line("STAT 0:secs_since_last_cmd 0");
  for (const c of listing.connections) {
    out.line(`STAT ${c.id}:addr tcp:${c.peer}`);
    out.line(`STAT ${c.id}:listen_addr tcp:${listing.listen}`);
    out.line(`STAT ${c.id}:state ${c.owed > 0 ? "conn_mwrite" : "conn_waiting"}`);
    out.line(`STAT ${c.id}:secs_since_last_cmd ${Math.floor((now - c.lastCommandAt) / 1000)}`);
  }
}

/** Flare's thread types: a request thread per connection, a node thread per replication stream. */
const REQUEST_THREAD = 1;
const NODE_THREAD = 16;

/**
 * Flare's `stats threads [request|slave|queue]`: each connection as a request thread, a master's
 * replication streams as node threads. Returns false (ERROR written) for another word.
 */
function threads(source: StatsSource, which: string | undefined, out: ReplyBuffer): boolean {
  const streams = source.replication();
  if (which === "queue") {
    out.line(`STAT total_thread_queue ${streams.reduce((n, s) => n + s.queued, 0)}`);
    return true;
  }
  if (which !== undefined && which !== "request" && which !== "slave") {
    out.line("ERROR");
    return false;
  }
  const now = Date.now();
  const thread = (
    id: number,
    type: number,
    peer: string,
    op: string,
    uptime: number,
    state: string,
    queued: number,
  ) => {
    out.line(`STAT ${id}:type ${type}`);
    out.line(`STAT ${id}:peer ${peer}`);
    out.line(`STAT ${id}:op ${op}`);
    out.line(`STAT ${id}:uptime ${uptime}`);
    out.line(`STAT ${id}:state ${state}`);
    out.line(`STAT ${id}:info `);
    out.line(`STAT ${id}:queue ${queued}`);
    out.line(`STAT ${id}:behind 0`);
  };
  if (which !== "slave") {
    for (const c of source.server().listing?.().connections ?? []) {
      const uptime = Math.floor((now - c.openedAt) / 1000);
      thread(c.id, REQUEST_THREAD, c.peer, c.lastOp, uptime, c.owed > 0 ? "execute" : "wait", 0);
    }
  }
  if (which !== "request") {
    // Ids apart from connection numbers, as Flare's thread ids are one sequence.
    for (const [i, s] of streams.entries())
      thread(1_000_000 + i, NODE_THREAD, s.peer, "sync", 0, "execute", s.queued);
  }
  return true;
}
