/**
 * `stats` and its sub-reports, answered alike by a node and the proxy, as memcached does, so tools
 * that read until END (memcached-tool, libmemcached) never wait for a reply that will not come.
 * Each role supplies its own figures; the slab, item and size reports are empty: no slab allocator.
 */
import type { ReplyBuffer } from "./reply.js";

export type StatPairs = [string, string | number][];

/** What a role reports. */
export interface StatsSource {
  general(): StatPairs;
  settings(): StatPairs;
  /** `stats reset`: zero the counters. */
  reset(): void;
  /** `stats nodes` (Flare): the node map as this process sees it. */
  nodes(): string[];
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
    case "reset":
      source.reset();
      out.line("RESET");
      return;
    case "nodes":
      for (const line of source.nodes()) out.line(line);
      break;
    case "items":
    case "slabs":
    case "sizes":
    case "conns":
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
