/** `flare cluster` (npm start): the seed's layout as child processes, and Ctrl-C stops them all. */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { describe, expect, it, onTestFinished } from "vitest";
import { RawClient } from "./helpers/raw-client.js";

const BIN = fileURLToPath(new URL("../bin/flare", import.meta.url));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("flare cluster", () => {
  it("starts index, master, slave and proxy, serves through the proxy, and SIGINT leaves no process", async () => {
    const proc = spawn(process.execPath, [BIN, "cluster", "--base-port", "0"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    // Whatever happens below, the cluster is asked to stop (it stops its children itself).
    onTestFinished(() => {
      if (proc.exitCode === null) proc.kill("SIGINT");
    });
    let out = "";
    proc.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    const deadline = Date.now() + 30_000;
    while (!out.includes("Ctrl-C stops the cluster.")) {
      if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`cluster did not come up: ${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const port = Number(/memcached\s+127\.0\.0\.1:(\d+)/.exec(out)?.[1]);
    const pids = (/pids\s+([\d ]+)/.exec(out)?.[1] ?? "").trim().split(" ").map(Number);
    const logs = /logs\s+(\S+)/.exec(out)?.[1] as string;
    expect(pids).toHaveLength(4);
    // The seed's layout: master balance 1, slave balance 2, and the proxy listed as a proxy.
    expect(out).toMatch(
      /STAT localhost:\d+:role master\nSTAT localhost:\d+:state active\nSTAT localhost:\d+:partition 0\nSTAT localhost:\d+:balance 1/,
    );
    expect(out).toMatch(
      /STAT localhost:\d+:role slave\nSTAT localhost:\d+:state active\nSTAT localhost:\d+:partition 0\nSTAT localhost:\d+:balance 2/,
    );
    expect(out).toContain(`STAT localhost:${port}:role proxy`);

    // As the README's `printf ... | nc`: send everything, shut down the sending side, read all replies.
    const c = await RawClient.open(port);
    c.socket.end("set greeting 0 0 5\r\nhello\r\nget greeting\r\n");
    expect(await c.waitClosed()).toBe("STORED\r\nVALUE greeting 0 5\r\nhello\r\nEND\r\n");

    const exited = once(proc, "exit");
    proc.kill("SIGINT");
    const [code] = (await exited) as [number];
    expect(code).toBe(0);
    expect(out).toContain("stopped.");
    for (const pid of pids) expect(alive(pid), `pid ${pid}`).toBe(false);
    expect(existsSync(logs)).toBe(false);
  });

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
});
