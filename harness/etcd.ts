/**
 * A local etcd cluster on loopback (Debian's etcd-server), for the index's `index-db = etcd://`:
 * the tests' and `flare cluster --etcd`'s. Each member in its own directory under a temp dir,
 * on ports below the ephemeral range (so no client socket can hold one), removed on stop.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { portFree, waitListening } from "./servers.js";

/** Whether etcd is installed. */
export function etcdAvailable(): boolean {
  try {
    execFileSync("etcd", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** A free port between 20000 and 32000: a server's, never an ephemeral one. */
async function servicePort(taken: Set<number>): Promise<number> {
  for (;;) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    if (!taken.has(port) && (await portFree("127.0.0.1", port))) {
      taken.add(port);
      return port;
    }
  }
}

export interface EtcdMember {
  name: string;
  clientPort: number;
  peerPort: number;
  proc: ChildProcess;
}

export interface EtcdCluster {
  members: EtcdMember[];
  /** `etcd://127.0.0.1:p1,.../prefix` for index-db. */
  url(prefix?: string): string;
  /** kill -9 one member (by index). */
  kill(i: number): Promise<void>;
  /** Starts a killed member again on its data. */
  restart(i: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts `size` etcd members as one cluster and waits until each listens. `ownGroup`: the members
 * run in a process group of their own, so a terminal's Ctrl-C reaches the indexes, which hand
 * over their leases, before etcd stops (`flare cluster` stops it last).
 */
export async function startEtcd(size = 3, ownGroup = false): Promise<EtcdCluster> {
  const dir = mkdtempSync(join(tmpdir(), "flare-etcd-"));
  const taken = new Set<number>();
  const ports: { client: number; peer: number }[] = [];
  for (let i = 0; i < size; i++)
    ports.push({ client: await servicePort(taken), peer: await servicePort(taken) });
  const initial = ports.map((p, i) => `e${i}=http://127.0.0.1:${p.peer}`).join(",");
  const token = `flare-${process.pid}-${Date.now()}`;
  const spawnMember = (i: number, state: "new" | "existing"): ChildProcess => {
    const p = ports[i] as { client: number; peer: number };
    return spawn(
      "etcd",
      [
        "--name",
        `e${i}`,
        "--data-dir",
        join(dir, `e${i}`),
        "--listen-client-urls",
        `http://127.0.0.1:${p.client}`,
        "--advertise-client-urls",
        `http://127.0.0.1:${p.client}`,
        "--listen-peer-urls",
        `http://127.0.0.1:${p.peer}`,
        "--initial-advertise-peer-urls",
        `http://127.0.0.1:${p.peer}`,
        "--initial-cluster",
        initial,
        "--initial-cluster-state",
        state,
        "--initial-cluster-token",
        token,
        // Loopback: beats and elections can be quick.
        "--heartbeat-interval",
        "100",
        "--election-timeout",
        "1000",
        "--log-level",
        "error",
      ],
      { stdio: ["ignore", "ignore", "ignore"], detached: ownGroup },
    );
  };
  const members: EtcdMember[] = ports.map((p, i) => ({
    name: `e${i}`,
    clientPort: p.client,
    peerPort: p.peer,
    proc: spawnMember(i, "new"),
  }));
  const stopMember = async (m: EtcdMember, signal: NodeJS.Signals): Promise<void> => {
    if (m.proc.exitCode !== null || m.proc.signalCode !== null) return;
    const exited = once(m.proc, "exit");
    m.proc.kill(signal);
    await exited;
  };
  const cluster: EtcdCluster = {
    members,
    url: (prefix = "/flare") =>
      `etcd://${members.map((m) => `127.0.0.1:${m.clientPort}`).join(",")}${prefix}`,
    kill: (i) => stopMember(members[i] as EtcdMember, "SIGKILL"),
    async restart(i) {
      const m = members[i] as EtcdMember;
      m.proc = spawnMember(i, "existing");
      await waitListening(m.proc, m.clientPort, "etcd");
    },
    async stop() {
      // Its data goes with it: no graceful stop (which waits seconds for peers that stop too).
      await Promise.all(members.map((m) => stopMember(m, "SIGKILL")));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await Promise.all(members.map((m) => waitListening(m.proc, m.clientPort, "etcd")));
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}
