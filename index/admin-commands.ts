/** flarei's text commands (flare-notes §1.3), with its reply lines byte for byte. */
import type { LineReply } from "../common/line-server.js";
import { VERSION } from "../common/version.js";
import type { AuthSession, ClusterSecret } from "../protocol/cluster-auth.js";
import { ROLES, type Role, STATES } from "../protocol/node-map.js";
import type { Change } from "./node-map.js";
import type { IndexService } from "./service.js";

export interface IndexInfo {
  startedAt: number;
  connections: () => number;
  /** With a token, changes need an authenticated connection; open mode takes them from anyone. */
  secret: ClusterSecret;
}

const reply = (...lines: string[]): LineReply => ({ lines });
const ERROR = reply("ERROR");
const UNAUTHENTICATED = reply("SERVER_ERROR unauthenticated: changes need the cluster-token (cluster auth)");

function port(s: string | undefined): number | null {
  if (s === undefined || !/^\d{1,5}$/.test(s)) return null;
  const n = Number(s);
  return n >= 1 && n <= 65535 ? n : null;
}

function int(s: string | undefined, fallback: number): number | null {
  if (s === undefined) return fallback;
  return /^-?\d{1,9}$/.test(s) ? Number(s) : null;
}

export function indexCommands(
  service: IndexService,
  info: IndexInfo,
): (line: string, session: AuthSession) => LineReply | Promise<LineReply> {
  return (line, session) => {
    const t = line.split(" ").filter((w) => w !== "");
    const changes = t[0] === "node" || t[0] === "shutdown";
    if (changes && !info.secret.open && session.peer === undefined) return UNAUTHENTICATED;
    switch (t[0]) {
      case "ping":
        return t.length === 1 ? reply("OK") : ERROR;
      case "version":
        return reply(`VERSION ${VERSION}`);
      case "quit":
        return { lines: ["END"], close: true };
      case "verbosity":
        return t.length >= 2 && t.length <= 3
          ? reply(...(t[t.length - 1] === "noreply" ? [] : ["OK"]))
          : ERROR;
      case "meta":
        return reply(...service.meta(), "END");
      case "stats":
        if (t[1] === "nodes" && t.length === 2) return reply(...service.statsNodes(), "END");
        if (t.length === 1) return reply(...stats(service, info), "END");
        if (t.length === 2 && ["items", "slabs", "sizes"].includes(t[1] as string)) return reply("END");
        return ERROR;
      case "shutdown": {
        const p = port(t[2]);
        if (t.length !== 3 || p === null) return ERROR;
        return outcome(service.shutdown(t[1] as string, p), "SERVER_ERROR failed to shutdown");
      }
      case "suspect": {
        // flare-ts: a proxy could not reach a node; the index checks it now instead of at its next interval.
        const p = port(t[2]);
        if (t.length !== 3 || p === null) return ERROR;
        // Only the leader checks nodes: the others say so, and the proxy asks the next index.
        if (!service.leading) return reply(`SERVER_ERROR ${service.notLeader()}`);
        return reply(service.suspect(t[1] as string, p) ? "OK" : "SERVER_ERROR unknown node");
      }
      case "node":
        return node(service, t);
      default:
        return ERROR;
    }
  };
}

/**
 * OK, or Flare's refusal line; an index that does not lead says so and names the leader, so a
 * peer can ask it instead.
 */
async function outcome(change: Promise<Change>, refusal: string): Promise<LineReply> {
  const c = await change;
  if (c.ok) return reply("OK");
  return reply(c.leader === undefined ? refusal : `SERVER_ERROR ${c.error}`);
}

function node(service: IndexService, t: string[]): LineReply | Promise<LineReply> {
  const host = t[2];
  const p = port(t[3]);
  if (host === undefined || p === null) return ERROR;
  switch (t[1]) {
    case "add": {
      // flare-ts nodes add their HTTP port (0: none) and their master lease in ms (Flare's take 4).
      const http = t.length >= 5 && t[4] !== "0" ? port(t[4]) : undefined;
      const lease = t.length === 6 ? int(t[5], 0) : 0;
      if (t.length < 4 || t.length > 6 || http === null || lease === null || lease < 0) return ERROR;
      return outcome(
        service.add(host, p, http, lease > 0 ? lease : undefined),
        "SERVER_ERROR failed to add node",
      ).then((r) => (r.lines[0] === "OK" ? reply(...service.nodeLines(), "END") : r));
    }
    case "role": {
      const role = t[4] as Role;
      const balance = int(t[5], -1);
      const partition = int(t[6], -1);
      if (t.length < 5 || t.length > 7 || !ROLES.includes(role) || balance === null || partition === null)
        return ERROR;
      return outcome(
        service.setRole(host, p, role, balance, partition),
        "SERVER_ERROR failed to set role (and balance)",
      );
    }
    case "state": {
      const state = t[4];
      if (t.length !== 5 || !STATES.includes(state as never)) return ERROR;
      return outcome(service.setState(host, p, state as never), "SERVER_ERROR failed to set state");
    }
    case "remove":
      if (t.length !== 4) return ERROR;
      return outcome(service.remove(host, p), "SERVER_ERROR failed to remove node");
    default:
      return ERROR;
  }
}

function stats(service: IndexService, info: IndexInfo): string[] {
  const now = Date.now();
  const usage = process.resourceUsage();
  return [
    `STAT pid ${process.pid}`,
    `STAT uptime ${Math.floor((now - info.startedAt) / 1000)}`,
    `STAT time ${Math.floor(now / 1000)}`,
    `STAT version ${VERSION}`,
    "STAT pointer_size 64",
    `STAT rusage_user ${(usage.userCPUTime / 1e6).toFixed(6)}`,
    `STAT rusage_system ${(usage.systemCPUTime / 1e6).toFixed(6)}`,
    "STAT curr_items 0",
    "STAT total_items 0",
    "STAT bytes 0",
    `STAT curr_connections ${info.connections()}`,
    `STAT node_map_version ${service.map.version}`,
    `STAT failovers ${service.failovers}`,
    `STAT index_db ${service.store.kind}`,
    `STAT leader ${service.leading ? 1 : 0}`,
    `STAT leader_address ${service.store.leader ?? "-"}`,
  ];
}
