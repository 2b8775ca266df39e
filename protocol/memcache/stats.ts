/**
 * `stats` sub-reports that a node and the proxy answer alike, as memcached does, so tools that
 * read until END (memcached-tool, libmemcached) never wait for a reply that will not come. The
 * slab, item and size reports are empty: no slab allocator here.
 */

/** The reply lines of these sub-reports, or undefined for the others (general, settings, reset, nodes). */
export function commonStats(args: readonly string[]): string[] | undefined {
  const [sub, ...rest] = args;
  switch (sub) {
    case "detail":
      if (rest.length === 1 && (rest[0] === "on" || rest[0] === "off")) return ["OK"];
      if (rest.length === 1 && rest[0] === "dump") return ["END"];
      return ["CLIENT_ERROR usage: stats detail on|off|dump"];
    case "cachedump":
      return ["END"];
    case "items":
    case "slabs":
    case "sizes":
    case "conns":
      return rest.length === 0 ? ["END"] : ["ERROR"];
    default:
      return undefined;
  }
}
