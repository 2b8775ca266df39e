/**
 * The node map every role shares: which node is master, slave or proxy of which partition, and
 * its state and read weight. The index owns it and pushes it; nodes and proxies follow it.
 * Wire forms are Flare's: `NODE <host> <port> <role#> <state#> <partition> <balance> <thread_type>`,
 * then `<http-port> <lease-ms>` (0: none) when the node announced either: Flare reads the first
 * eight words and ignores the rest, and our proxies need the HTTP port to forward HTTP requests.
 */
import { z } from "zod";

export const ROLES = ["master", "slave", "proxy"] as const;
export const STATES = ["active", "prepare", "down", "ready"] as const;
export type Role = (typeof ROLES)[number];
export type NodeState = (typeof STATES)[number];

export const nodeEntrySchema = z.object({
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535),
  role: z.enum(ROLES),
  state: z.enum(STATES),
  partition: z.number().int().min(-1),
  balance: z.number().int().min(0),
  threadType: z.number().int().min(0),
  /** The node's HTTP API port, where proxies send HTTP requests (the 9th word of a NODE line). */
  httpPort: z.number().int().min(1).max(65535).optional(),
  /**
   * The master lease the node holds (ms; absent = none): the index promotes a slave over it only
   * once that long has passed since the node last answered a ping (the 10th word of a NODE line).
   */
  leaseMs: z.number().int().min(1).optional(),
  /** The balance a rebuilding slave was given; it takes effect when the slave becomes active. */
  pendingBalance: z.number().int().min(0).optional(),
});
export type NodeEntry = z.infer<typeof nodeEntrySchema>;

export const nodeMapSchema = z.object({
  version: z.number().int().min(0),
  nextThreadType: z.number().int().min(0),
  nodes: z.array(nodeEntrySchema),
});
export type NodeMapData = z.infer<typeof nodeMapSchema>;

/** Node identity is the literal `host:port` the node announced (Flare: no DNS normalisation). */
export function nodeKey(host: string, port: number): string {
  return `${host}:${port}`;
}

export function nodeLine(n: NodeEntry): string {
  const flare = `NODE ${n.host} ${n.port} ${ROLES.indexOf(n.role)} ${STATES.indexOf(n.state)} ${n.partition} ${n.balance} ${n.threadType}`;
  return n.httpPort === undefined && n.leaseMs === undefined
    ? flare
    : `${flare} ${n.httpPort ?? 0} ${n.leaseMs ?? 0}`;
}

/** Parses one `NODE ...` line; null when it is not one. */
export function parseNodeLine(line: string): NodeEntry | null {
  const t = line.split(" ");
  if ((t.length !== 8 && t.length !== 10) || t[0] !== "NODE") return null;
  const nums = t.slice(2).map(Number);
  if (nums.some((n) => !Number.isInteger(n))) return null;
  const [port, role, state, partition, balance, threadType, httpPort = 0, leaseMs = 0] = nums as [
    number,
    number,
    number,
    number,
    number,
    number,
    number?,
    number?,
  ];
  const parsed = nodeEntrySchema.safeParse({
    host: t[1],
    port,
    role: ROLES[role],
    state: STATES[state],
    partition,
    balance,
    threadType,
    ...(httpPort > 0 ? { httpPort } : {}),
    ...(leaseMs > 0 ? { leaseMs } : {}),
  });
  return parsed.success ? parsed.data : null;
}

/** `stats nodes`: five STAT lines per node, nodes sorted by key (Flare's std::map order). */
export function statsNodesLines(nodes: readonly NodeEntry[]): string[] {
  const sorted = [...nodes].sort((a, b) => compareKeys(nodeKey(a.host, a.port), nodeKey(b.host, b.port)));
  const out: string[] = [];
  for (const n of sorted) {
    const k = nodeKey(n.host, n.port);
    out.push(
      `STAT ${k}:role ${n.role}`,
      `STAT ${k}:state ${n.state}`,
      `STAT ${k}:partition ${n.partition}`,
      `STAT ${k}:balance ${n.balance}`,
      `STAT ${k}:thread_type ${n.threadType}`,
    );
  }
  return out;
}

/** Byte order, as std::map<std::string> sorts. */
export function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
