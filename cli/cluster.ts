/**
 * `flare cluster` (what `npm start` runs): the seed's layout on one machine as child processes: an
 * index, a master (balance 1), a slave (balance 2) and a proxy, on the embedded default engine.
 * It prints where to connect, and Ctrl-C stops everything it started.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { TOKEN_ENV, tokenFrom } from "../common/cluster-secret.js";
import { type ConfigSpec, cfg } from "../common/config.js";
import { type EtcdCluster, etcdAvailable, startEtcd } from "../harness/etcd.js";
import { portFree } from "../harness/servers.js";
import { ClusterSecret, type Credentials } from "../protocol/cluster-auth.js";
import { LineClient, oneLine } from "../protocol/line-client.js";
import { nodesTable, parseStatsNodes } from "./admin.js";
import { type Proc, startRole } from "./launcher.js";

export const clusterSchema = z.object({
  "base-port": cfg
    .int(0, 65535 - 63)
    .default(12120)
    .describe(
      "Index port; master, slave and proxy take the next three, HTTP ports are 60 above each (0 = any free ports).",
    ),
  "bind-address": cfg.str().default("127.0.0.1").describe("Address every process listens on."),
  "storage-type": z.enum(["memory", "leveldb", "redis"]).default("memory").describe("The nodes' engine."),
  "redis-url": cfg.str().default("redis://127.0.0.1:6379").describe("Redis server for storage-type = redis."),
  "replication-type": z
    .enum(["async", "sync"])
    .default("sync")
    .describe("sync: a write is acknowledged once the slave has it too, so reads from either see it."),
  "monitor-interval": cfg.int(1, 3600).default(1).describe("The index's seconds between health checks."),
  "monitor-threshold": cfg.int(1, 100).default(3).describe("Failed checks in a row that mark a node down."),
  "cluster-token": cfg
    .str()
    .optional()
    .describe(`The cluster's secret (also ${TOKEN_ENV}); unset = a new random one for this run.`),
  "index-db": z
    .string()
    .regex(/^etcd:\/\/\S+$/, "expected etcd://host:port[,host:port...][/prefix]")
    .optional()
    .describe("An etcd the index keeps the map in: three index processes share it, one leads."),
  etcd: cfg
    .bool()
    .default(false)
    .describe(
      "Also start a local three-member etcd (Debian's etcd-server) and three index processes sharing it.",
    ),
});

export type ClusterConfig = z.infer<typeof clusterSchema>;

export const clusterConfigSpec: ConfigSpec<typeof clusterSchema.shape> = {
  role: "cluster",
  schema: clusterSchema,
  ignored: new Set(),
};

export async function runCluster(c: ClusterConfig, untilSignal: () => Promise<void>): Promise<number> {
  const o = { basePort: c["base-port"], host: c["bind-address"], storageType: c["storage-type"] };
  // Listen for Ctrl-C from the start: a signal during start-up must not orphan what was started.
  const signalled = untilSignal();
  const port = (offset: number) => (o.basePort === 0 ? 0 : o.basePort + offset);
  if (o.basePort !== 0) {
    for (const offset of [0, 1, 2, 3, 4, 5, 60, 61, 62, 63, 64, 65]) {
      if (!(await portFree(o.host, port(offset)))) {
        process.stderr.write(
          `flare cluster: port ${port(offset)} is in use: is another cluster running? Stop it, or pass --base-port.\n`,
        );
        return 2;
      }
    }
  }
  const dir = mkdtempSync(join(tmpdir(), "flare-cluster-"));
  // Secure by default: the children share a secret; operators find it in a file only we can read.
  const token = tokenFrom(c["cluster-token"]) ?? randomBytes(24).toString("base64url");
  const admin: Credentials = { secret: new ClusterSecret(token), role: "admin" };
  const adminConf = join(dir, "admin.conf");
  writeFileSync(adminConf, `cluster-token = ${token}\n`, { mode: 0o600 });
  const started: Proc[] = [];
  let etcd: EtcdCluster | undefined;
  let interrupted = false;
  void signalled.then(() => {
    interrupted = true;
  });
  /** Starts a role; whatever was started is stopped later, even when Ctrl-C came meanwhile. */
  const launch = async (
    role: Parameters<typeof startRole>[0],
    args: string[],
    log: string,
  ): Promise<Proc> => {
    const p = await startRole(role, args, log, { [TOKEN_ENV]: token });
    started.push(p);
    if (interrupted) throw new Error("interrupted");
    return p;
  };
  const stopAll = async (): Promise<void> => {
    // Proxy and nodes first (they tell the index they leave), the index last.
    for (const p of [...started].reverse()) await p.kill("SIGTERM");
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const common = ["--server-name", "localhost", "--bind-address", o.host];
    if (c.etcd) {
      if (!etcdAvailable()) throw new Error("--etcd needs etcd (Debian: apt-get install etcd-server)");
      etcd = await startEtcd(3, true);
      if (interrupted) throw new Error("interrupted");
    }
    const indexDb = etcd?.url() ?? c["index-db"];
    // With a shared map three index processes run: index ports at base, base+4 and base+5.
    const indexOffsets = indexDb === undefined ? [0] : [0, 4, 5];
    const indexes: Proc[] = [];
    for (const [i, offset] of indexOffsets.entries()) {
      indexes.push(
        await launch(
          "index",
          [
            ...(indexDb === undefined ? ["--data-dir", join(dir, "index")] : ["--index-db", indexDb]),
            ...common,
            "--server-port",
            String(port(offset)),
            "--http-port",
            String(port(60 + offset)),
            "--monitor-interval",
            String(c["monitor-interval"]),
            "--monitor-threshold",
            String(c["monitor-threshold"]),
          ],
          join(dir, i === 0 ? "index.log" : `index${i}.log`),
        ),
      );
    }
    const index = indexes[0] as Proc;
    const join_ = [...common, "--index-servers", indexes.map((x) => `${o.host}:${x.port}`).join(",")];
    /** The index that leads (the only one, without a shared map). */
    const leader = async (): Promise<Proc> => {
      const deadline = Date.now() + 30_000;
      for (;;) {
        for (const x of indexes) {
          const stats = await LineClient.ask(o.host, x.port, "stats").catch(() => [] as string[]);
          if (stats.includes("STAT leader 1")) return x;
        }
        if (Date.now() > deadline) throw new Error("no index became leader");
        if (interrupted) throw new Error("interrupted");
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    const node = (name: string, offset: number): Promise<Proc> => {
      mkdirSync(join(dir, name));
      const args = [
        ...join_,
        "--storage-type",
        o.storageType,
        "--data-dir",
        join(dir, name),
        "--replication-type",
        c["replication-type"],
        "--redis-url",
        c["redis-url"],
      ];
      const ports = ["--server-port", String(port(offset)), "--http-port", String(port(60 + offset))];
      return launch("node", [...args, ...ports], join(dir, `${name}.log`));
    };
    const master = await node("master", 1);
    const slave = await node("slave", 2);
    const expectOk = async (command: string): Promise<void> => {
      const [reply] = await LineClient.ask(o.host, (await leader()).port, command, oneLine, 5000, admin);
      if (reply !== "OK") throw new Error(`${command}: ${reply}`);
    };
    await expectOk(`node role localhost ${master.port} master 1 0`);
    await expectOk(`node role localhost ${slave.port} slave 2 0`);
    const deadline = Date.now() + 30_000;
    while (
      !(await LineClient.ask(o.host, index.port, "stats nodes")).includes(
        `STAT localhost:${slave.port}:state active`,
      )
    ) {
      if (Date.now() > deadline) throw new Error("the slave did not finish its rebuild");
      if (interrupted) throw new Error("interrupted");
      await new Promise((r) => setTimeout(r, 100));
    }
    const proxy = await launch(
      "proxy",
      [...join_, "--server-port", String(port(3)), "--http-port", String(port(63))],
      join(dir, "proxy.log"),
    );
    const nodes = nodesTable(
      `${o.host}:${index.port}`,
      parseStatsNodes(await LineClient.ask(o.host, index.port, "stats nodes")),
    );
    process.stdout.write(
      [
        `flare-ts cluster is up (engine: ${o.storageType}, replication: ${c["replication-type"]})`,
        `  memcached  ${o.host}:${proxy.port}   (the proxy: any memcached client)`,
        `  HTTP       http://${o.host}:${proxy.httpPort}/v1/kv/<key>`,
        `  dashboard  http://${o.host}:${(indexes[0] as Proc).httpPort}/   (the cluster, live, in a browser)`,
        ...indexes.map(
          (x, i) =>
            `  index      ${o.host}:${x.port} (flarei admin), http://${o.host}:${x.httpPort}/v1/cluster${i === 0 && indexDb !== undefined ? `  (${indexes.length} sharing ${indexDb})` : ""}`,
        ),
        `  nodes      master ${o.host}:${master.port}, slave ${o.host}:${slave.port}`,
        `  metrics    ${[
          ...indexes.map((x, i) => [i === 0 ? "index" : `index${i}`, x] as const),
          ["master", master],
          ["slave", slave],
          ["proxy", proxy],
        ]
          .map(([name, p]) => `${name} http://${o.host}:${(p as Proc).httpPort}/metrics`)
          .join("  ")}`,
        `  logs       ${dir}`,
        `  pids       ${started.map((p) => p.pid).join(" ")}${etcd === undefined ? "" : ` (etcd: ${etcd.members.map((m) => m.proc.pid).join(" ")})`}`,
        "",
        nodes,
        "",
        `Try: npx flare admin --index ${o.host}:${index.port} stats nodes`,
        `Changes need the cluster's secret: npx flare admin -f ${adminConf} --index ${o.host}:${index.port} role ...`,
        "Ctrl-C stops the cluster.",
        "",
      ].join("\n"),
    );
  } catch (err) {
    await stopAll();
    if (interrupted) return 0;
    process.stderr.write(`flare cluster: ${(err as Error).message}\n`);
    return 1;
  }
  await signalled;
  process.stdout.write("stopping...\n");
  await stopAll();
  process.stdout.write("stopped.\n");
  return 0;
}
