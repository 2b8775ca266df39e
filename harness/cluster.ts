/** Real clusters for the benchmarks: an index, a master and slaves, as child processes. */
import { mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Proc, startRole } from "../cli/launcher.js";

export { type Proc, startRole } from "../cli/launcher.js";

/** One request, its reply up to `suffix` (one line by default); "" when the node is gone. */
export function ask(port: number, text: string, suffix = "\r\n"): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ port, host: "127.0.0.1" });
    let out = "";
    s.on("data", (d) => {
      out += d.toString();
      if (out.endsWith(suffix)) {
        s.destroy();
        resolve(out);
      }
    });
    s.on("error", () => resolve(""));
    s.write(text);
  });
}

export interface Cluster {
  index: Proc;
  master: Proc;
  slaves: Proc[];
  stop(): Promise<void>;
}

async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Flags that make a node or proxy (named localhost) join the index on loopback `indexPort`. */
export function joinArgs(indexPort: number, extra: string[] = []): string[] {
  return [
    "--server-name",
    "localhost",
    "--index-server-name",
    "127.0.0.1",
    "--index-server-port",
    String(indexPort),
    ...extra,
  ];
}

/** index (monitor-interval 1, threshold 3) + master + `slaves` rebuilt and active (balance 2 each). */
export async function startCluster(
  slaves: number,
  nodeArgs: string[] = [],
  indexArgs: string[] = [],
): Promise<Cluster> {
  const dir = mkdtempSync(join(tmpdir(), "flare-bench-cluster-"));
  const index = await startRole("index", [
    "--data-dir",
    dir,
    "--monitor-interval",
    "1",
    "--monitor-threshold",
    "3",
    ...indexArgs,
  ]);
  const join_ = joinArgs(index.port, nodeArgs);
  const master = await startRole("node", join_);
  const started = await Promise.all(Array.from({ length: slaves }, () => startRole("node", join_)));
  const admin = async (cmd: string): Promise<void> => {
    const r = await ask(index.port, `${cmd}\r\n`);
    if (r !== "OK\r\n") throw new Error(`${cmd}: ${r}`);
  };
  await admin(`node role localhost ${master.port} master 1 0`);
  for (const s of started) {
    await admin(`node role localhost ${s.port} slave 2 0`);
    await until(async () => (await stateOf(index.port, s.port)) === "active", "a slave to be rebuilt");
  }
  await until(
    async () => (await ask(master.port, "set warm 0 0 1\r\nx\r\n")) === "STORED\r\n",
    "the master to take writes",
  );
  return {
    index,
    master,
    slaves: started,
    async stop() {
      await Promise.all([master, ...started].map((p) => p.kill("SIGTERM")));
      await index.kill("SIGTERM");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function stateOf(indexPort: number, port: number): Promise<string | undefined> {
  const listing = await ask(indexPort, "stats nodes\r\n", "END\r\n");
  return new RegExp(`STAT localhost:${port}:state (\\w+)`).exec(listing)?.[1];
}
