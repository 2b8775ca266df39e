/**
 * `npm start` (flare cluster) as a new user runs it: from a fresh clone, which installs, builds and
 * starts the seed's layout; Ctrl-C (SIGINT to the process group, as a terminal sends it) stops it all.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it, onTestFinished } from "vitest";
import { RawClient } from "../helpers/raw-client.js";
import { requireCommand } from "../helpers/tools.js";

const REPO = fileURLToPath(new URL("../..", import.meta.url));
const BIN = fileURLToPath(new URL("../../bin/flare", import.meta.url));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Pids of the processes in a process group (the npm start tree). */
function groupMembers(pgid: number): number[] {
  const out = execFileSync("ps", ["-eo", "pid=,pgid="], { encoding: "utf8" });
  return out
    .trim()
    .split("\n")
    .map((l) => l.trim().split(/\s+/).map(Number))
    .filter(([, g]) => g === pgid)
    .map(([pid]) => pid as number);
}

/**
 * `command` in a process group of its own, as a terminal starts it (so a SIGINT to the group is
 * Ctrl-C), with what it writes kept; whatever is left of the group is killed when the test ends.
 */
function startInGroup(
  command: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): { proc: ChildProcess; group: number; output: { out: string; err: string } } {
  const proc = spawn(command, args, { ...options, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  const group = proc.pid as number;
  onTestFinished(() => {
    for (const pid of groupMembers(group)) process.kill(pid, "SIGKILL");
  });
  const output = { out: "", err: "" };
  proc.stdout?.on("data", (d: Buffer) => {
    output.out += d.toString();
  });
  proc.stderr?.on("data", (d: Buffer) => {
    output.err += d.toString();
  });
  return { proc, group, output };
}

/** Waits for flare cluster's "up" message; fails with what it wrote when it exits or takes too long. */
async function untilUp(
  proc: ChildProcess,
  output: { out: string; err: string },
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!output.out.includes("Ctrl-C stops the cluster.")) {
    if (Date.now() > deadline || proc.exitCode !== null)
      throw new Error(`the cluster did not come up:\n${output.out}\n${output.err.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("npm start", () => {
  it("from a fresh clone: the seed's layout comes up, serves through the proxy, and Ctrl-C leaves no process", async () => {
    const dir = mkdtempSync(join(tmpdir(), "flare-fresh-clone-"));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const clone = join(dir, "flare-ts");
    execFileSync("git", ["clone", "-q", REPO, clone]);
    expect(existsSync(join(clone, "node_modules"))).toBe(false);
    // Its own process group, as in a terminal, so Ctrl-C reaches npm and everything under it.
    const {
      proc: npm,
      group,
      output,
    } = startInGroup("npm", ["start", "--", "--base-port", "0"], {
      cwd: clone,
      env: { ...process.env, npm_config_update_notifier: "false" },
    });
    // npm ci and the TypeScript build run first (prestart).
    await untilUp(npm, output, 150_000);
    const out = output.out;
    const port = Number(/memcached\s+127\.0\.0\.1:(\d+)/.exec(out)?.[1]);
    const http = /HTTP\s+(http:\S+)\/v1\/kv/.exec(out)?.[1] as string;
    const index = /index\s+(127\.0\.0\.1:\d+)/.exec(out)?.[1] as string;
    const pids = (/pids\s+([\d ]+)/.exec(out)?.[1] ?? "").trim().split(" ").map(Number);
    const metrics = [...out.matchAll(/(index|master|slave|proxy) (http:\S+\/metrics)/g)].map((m) =>
      m.slice(1),
    );
    const logs = /logs\s+(\S+)/.exec(out)?.[1] as string;
    expect(pids).toHaveLength(4);
    expect(metrics.map(([role]) => role)).toEqual(["index", "master", "slave", "proxy"]);

    // memcached through the proxy, as the README's printf | nc does it.
    const c = await RawClient.open(port);
    c.socket.end("set greeting 0 0 5\r\nhello\r\nget greeting\r\n");
    expect(await c.waitClosed()).toBe("STORED\r\nVALUE greeting 0 5\r\nhello\r\nEND\r\n");
    // HTTP through the proxy.
    expect((await fetch(`${http}/v1/kv/hi`, { method: "PUT", body: "there" })).status).toBe(200);
    expect(await (await fetch(`${http}/v1/kv/hi`)).text()).toBe("there");
    // The dashboard URL it prints serves the page.
    const dashboard = /dashboard\s+(http:\S+)/.exec(out)?.[1] as string;
    expect(await (await fetch(dashboard)).text()).toContain("<title>flare-ts cluster</title>");

    // The admin CLI of the clone lists the four processes with their roles: the seed's layout.
    const table = execFileSync(
      process.execPath,
      [join(clone, "bin/flare"), "admin", "--index", index, "stats", "nodes"],
      {
        encoding: "utf8",
      },
    );
    const [listing, footer] = table.trim().split("\n\n");
    const rows = (listing as string)
      .split("\n")
      .slice(1)
      .map((l) => l.split(/\s+/));
    // Each node's items, and the partition's keys as its master counts them.
    expect(footer).toMatch(/^keys per partition: 0: \d+$/);
    expect(rows.map((r) => [r[1], r[2], r[3], r[4]]).sort()).toEqual([
      ["index", "active", "-", "-"],
      ["master", "active", "0", "1"],
      ["proxy", "active", "-1", "0"],
      ["slave", "active", "0", "2"],
    ]);
    expect(rows.find((r) => r[1] === "proxy")?.[0]).toBe(`localhost:${port}`);

    // npm start runs in token mode: its children share a secret, written where only we can read it.
    // A change without it is refused; with it (-f the file, or FLARE_CLUSTER_TOKEN) it is taken.
    const adminConf = /admin -f (\S+)/.exec(out)?.[1] as string;
    expect(statSync(adminConf).mode & 0o777).toBe(0o600);
    const token = /^cluster-token = (\S+)$/m.exec(readFileSync(adminConf, "utf8"))?.[1] as string;
    expect(token.length).toBeGreaterThanOrEqual(32);
    const slaveNode = (rows.find((r) => r[1] === "slave")?.[0] ?? "").split(":");
    const flareAdmin = (args: string[], env: Record<string, string> = {}) =>
      spawnSync(process.execPath, [join(clone, "bin/flare"), "admin", "--index", index, ...args], {
        encoding: "utf8",
        env: { ...process.env, FLARE_CLUSTER_TOKEN: "", ...env },
      });
    const refused = flareAdmin(["role", ...slaveNode, "slave", "3", "0"]);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/SERVER_ERROR unauthenticated/);
    expect(flareAdmin(["-f", adminConf, "role", ...slaveNode, "slave", "3", "0"]).status).toBe(0);
    expect(flareAdmin(["role", ...slaveNode, "slave", "2", "0"], { FLARE_CLUSTER_TOKEN: token }).status).toBe(
      0,
    );
    expect(flareAdmin(["--cluster-token", "wrong", "role", ...slaveNode, "slave", "3", "0"]).status).toBe(1);

    // Every role serves /metrics; the requests above are counted where they went.
    const scrape = async (role: string) =>
      (await fetch((metrics.find(([r]) => r === role) as string[])[1] as string)).text();
    const proxyMetrics = await scrape("proxy");
    expect(proxyMetrics).toMatch(/flare_command_results_total\{command="set",result="ok"\} 1\n/);
    expect(proxyMetrics).toMatch(/flare_request_duration_seconds_count\{command="get"\} 1\n/);
    // Timed from the request's arrival to its reply leaving: more than nothing, less than forever.
    const getSeconds = Number(
      /flare_request_duration_seconds_sum\{command="get"\} (\S+)\n/.exec(proxyMetrics)?.[1],
    );
    expect(getSeconds).toBeGreaterThan(0);
    expect(getSeconds).toBeLessThan(5);
    expect(proxyMetrics).toMatch(
      /flare_http_request_duration_seconds_count\{method="PUT",route="\/v1\/kv\/:key",status="200"\} 1\n/,
    );
    // The proxy registered last and has seen no change since: it still knows the map's version.
    expect(proxyMetrics).toMatch(/\nflare_map_version [1-9]\d*\n/);
    const masterMetrics = await scrape("master");
    expect(masterMetrics).toMatch(/flare_command_results_total\{command="set",result="stored"\} 2\n/);
    expect(masterMetrics).toMatch(/flare_replication_lag\{slave="localhost:\d+"\} 0\n/);
    expect(await scrape("slave")).toMatch(/flare_items 2\n/);
    expect(await scrape("index")).toMatch(
      /flare_map_node\{node="localhost:\d+",role="slave",state="active",partition="0"\} 1\n/,
    );

    const exited = once(npm, "exit");
    process.kill(-group, "SIGINT");
    await exited;
    // npm exits as its script does; the cluster's own exit code and goodbye are what say it stopped well.
    expect(output.out).toContain("stopped.");
    for (const pid of pids) expect(alive(pid), `pid ${pid}`).toBe(false);
    const deadline2 = Date.now() + 5000;
    while (groupMembers(group).length > 0 && Date.now() < deadline2)
      await new Promise((r) => setTimeout(r, 100));
    expect(groupMembers(group)).toEqual([]);
    expect(existsSync(logs)).toBe(false);
  }, 180_000);

  it("refuses to start on ports in use, with a clear message", async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", () => r()));
    const port = (blocker.address() as { port: number }).port;
    const proc = spawn(process.execPath, [BIN, "cluster", "--base-port", String(port)], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let err = "";
    proc.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    const [code] = (await once(proc, "exit")) as [number];
    blocker.close();
    expect(code).toBe(2);
    expect(err).toBe(
      `flare cluster: port ${port} is in use: is another cluster running? Stop it, or pass --base-port.\n`,
    );
  });

  it("--etcd on: three indexes share a local etcd; kill -9 of the leading one, another leads and the cluster serves; Ctrl-C stops etcd too", async () => {
    requireCommand("etcd", "etcd-server");
    const { proc, group, output } = startInGroup(process.execPath, [
      BIN,
      "cluster",
      "--etcd",
      "on",
      "--base-port",
      "0",
    ]);
    await untilUp(proc, output, 60_000);
    const out = output.out;
    expect(out).toContain("flare-ts cluster is up");
    const indexes = [...out.matchAll(/ index {6}127\.0\.0\.1:(\d+) /g)].map((m) => Number(m[1]));
    expect(indexes).toHaveLength(3);
    expect(out).toMatch(/\(3 sharing etcd:\/\/127\.0\.0\.1:\d+,127\.0\.0\.1:\d+,127\.0\.0\.1:\d+\/flare\)/);
    const etcdPids = (/\(etcd: ([\d ]+)\)/.exec(out)?.[1] ?? "").split(" ").map(Number);
    const pids = (/pids\s+([\d ]+)/.exec(out)?.[1] ?? "").trim().split(" ").map(Number);
    expect(etcdPids).toHaveLength(3);
    expect(pids).toHaveLength(6);
    const proxyPort = Number(/memcached {2}127\.0\.0\.1:(\d+)/.exec(out)?.[1]);
    const ask = async (port: number, request: string, end = "\r\n") => {
      const c = await RawClient.open(port);
      try {
        return await c.ask(request, end);
      } finally {
        c.close();
      }
    };
    const leading = async () => {
      const says = await Promise.all(
        indexes.map((p) =>
          ask(p, "stats\r\n", "END\r\n").then(
            (s) => s.includes("STAT leader 1\r\n"),
            () => false,
          ),
        ),
      );
      return indexes.filter((_, i) => says[i]);
    };
    const [first] = await leading();
    expect(first).toBeDefined();
    expect(await ask(proxyPort, "set ha 0 0 2\r\nok\r\n")).toBe("STORED\r\n");
    // The leading index's pid: the one of the three index processes listening on its port.
    const leaderPid = pids[indexes.indexOf(first as number)] as number;
    process.kill(leaderPid, "SIGKILL");
    const until = Date.now() + 10_000;
    let next: number[] = [];
    while (Date.now() < until) {
      next = await leading();
      if (next.length === 1 && next[0] !== first) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(next).toHaveLength(1);
    expect(next[0]).not.toBe(first);
    expect(await ask(proxyPort, "set ha 0 0 3\r\nyes\r\n")).toBe("STORED\r\n");
    expect(await ask(proxyPort, "get ha\r\n", "END\r\n")).toBe("VALUE ha 0 3\r\nyes\r\nEND\r\n");

    const exited = once(proc, "exit");
    process.kill(-group, "SIGINT");
    const [code] = (await exited) as [number];
    expect(code).toBe(0);
    expect(output.out).toContain("stopped.");
    for (const pid of [...pids, ...etcdPids]) expect(alive(pid), `pid ${pid}`).toBe(false);
  }, 120_000);
});
