/**
 * The seed scenario (shared/seed-scenario.md) with real processes: index (monitor-interval 1,
 * monitor-threshold 3), master (balance 1), slave (balance 2), proxy; a set loop and a get loop of
 * 20-byte values through the proxy; kill -9 of the master mid-loop. Once over the memcached front,
 * once over the HTTP API.
 */
import { afterAll, describe, expect, it } from "vitest";
import { admin, attachSlave, joinArgs, nodeState, startIndex, until } from "../helpers/cluster.js";
import { startNodeProcess, startRole, stopAll } from "../helpers/processes.js";
import { RawClient } from "../helpers/raw-client.js";
import { startWorker } from "../helpers/worker.js";

afterAll(stopAll);

const value = (i: number) => `v${String(i).padStart(19, "0")}`;

/** One client of the proxy: a set and a get, each true when it did what was asked. */
interface Client {
  set(i: number): Promise<string | true>;
  get(i: number): Promise<string | true>;
  close(): void;
}

async function tcpClient(port: number): Promise<Client> {
  const c = await RawClient.open(port);
  return {
    async set(i) {
      const reply = await c.ask(`set key_${i} 0 0 20\r\n${value(i)}\r\n`);
      return reply === "STORED\r\n" || reply;
    },
    async get(i) {
      const reply = await c.ask(`get key_${i}\r\n`, "END\r\n");
      return reply === `VALUE key_${i} 0 20\r\n${value(i)}\r\nEND\r\n` || reply;
    },
    close: () => c.close(),
  };
}

function httpClient(origin: string): Client {
  const base = `${origin}/v1/kv`;
  return {
    async set(i) {
      const res = await fetch(`${base}/key_${i}`, { method: "PUT", body: value(i) });
      return res.status === 200 || `${res.status} ${await res.text()}`;
    },
    async get(i) {
      const res = await fetch(`${base}/key_${i}`);
      const body = await res.text();
      return (res.status === 200 && body === value(i)) || `${res.status} ${body}`;
    },
    close: () => {},
  };
}

/** The seed's layout: index (1 s / 3), master balance 1, slave balance 2, sync replication. */
async function seedCluster() {
  const index = await startIndex(["--http-port", "0"]);
  const nodeArgs = ["--replication-type", "sync", "--http-port", "0"];
  const master = await startNodeProcess(joinArgs(index, nodeArgs));
  const slave = await startNodeProcess(joinArgs(index, nodeArgs));
  await admin(index.port, `node role localhost ${master.port} master 1 0`);
  await attachSlave(index, slave, 2);
  /** kill -9 of the master; resolves once the index has promoted the slave. */
  const killMaster = async (): Promise<void> => {
    master.proc.kill("SIGKILL");
    await until(
      "the slave to be promoted",
      async () => (await nodeState(index, slave.port)) === "master/active",
    );
  };
  return { index, master, slave, killMaster };
}

async function scenario(transport: "tcp" | "http" | "worker"): Promise<void> {
  const { index, master, killMaster } = await seedCluster();
  let client: () => Promise<Client>;
  let stopFront = async (): Promise<void> => {};
  if (transport === "worker") {
    const worker = await startWorker(`http://127.0.0.1:${index.httpPort}`);
    stopFront = worker.stop;
    client = async () => httpClient(worker.url);
  } else {
    const proxy = await startRole("proxy", "proxy started", joinArgs(index, ["--http-port", "0"]));
    expect(await nodeState(index, proxy.port)).toBe("proxy/active");
    client = async () =>
      transport === "tcp" ? tcpClient(proxy.port) : httpClient(`http://127.0.0.1:${proxy.httpPort}`);
  }

  let running = true;
  let acked = 0;
  let gets = 0;
  let setStall = 0;
  let getStall = 0;
  const failures: string[] = [];
  const setLoop = (async () => {
    const c = await client();
    for (let i = 0; running; i++) {
      const t0 = performance.now();
      const ok = await c.set(i);
      setStall = Math.max(setStall, performance.now() - t0);
      if (ok === true) acked = i + 1;
      else failures.push(`set key_${i}: ${ok}`);
    }
    c.close();
  })();
  const getLoop = (async () => {
    const c = await client();
    while (running) {
      if (acked === 0) {
        await new Promise((r) => setTimeout(r, 5));
        continue;
      }
      const i = Math.floor(Math.random() * acked);
      const t0 = performance.now();
      const ok = await c.get(i);
      getStall = Math.max(getStall, performance.now() - t0);
      gets++;
      if (ok !== true) failures.push(`get key_${i}: ${ok}`);
    }
    c.close();
  })();

  await new Promise((r) => setTimeout(r, 1000));
  const before = acked;
  await killMaster();
  await new Promise((r) => setTimeout(r, 1500));
  running = false;
  await Promise.all([setLoop, getLoop]);

  console.log(
    `seed scenario over ${transport}: ${acked} sets (${acked - before} after the kill), ${gets} gets; longest set stall ${Math.round(setStall)} ms, longest get stall ${Math.round(getStall)} ms`,
  );
  expect(failures).toEqual([]);
  expect(acked - before).toBeGreaterThan(100);
  expect(gets).toBeGreaterThan(100);
  expect(await admin(index.port, "stats nodes", "END\r\n")).toContain(
    `STAT localhost:${master.port}:state down`,
  );
  await stopFront();
}

/**
 * The same kill, with pipelined clients: each packet carries 32 sets, or 32 gets, which the proxy
 * sends to the node as one run; a run whose node dies is retried request by request.
 */
async function pipelinedScenario(): Promise<void> {
  const { index, killMaster } = await seedCluster();
  const proxy = await startRole("proxy", "proxy started", joinArgs(index, ["--http-port", "0"]));
  const DEPTH = 32;
  let running = true;
  let acked = 0;
  let gets = 0;
  const failures: string[] = [];
  const setLoop = (async () => {
    const c = await RawClient.open(proxy.port);
    for (let i = 0; running; i += DEPTH) {
      let packet = "";
      for (let k = i; k < i + DEPTH; k++) packet += `set run_${k} 0 0 20\r\n${value(k)}\r\n`;
      c.send(packet);
      let replies = "";
      while (replies.split("\r\n").length <= DEPTH) replies += await c.readUntil("\r\n", 15_000);
      if (replies === "STORED\r\n".repeat(DEPTH)) acked = i + DEPTH;
      else failures.push(`sets run_${i}..: ${replies}`);
    }
    c.close();
  })();
  const getLoop = (async () => {
    const c = await RawClient.open(proxy.port);
    while (running) {
      if (acked === 0) {
        await new Promise((r) => setTimeout(r, 5));
        continue;
      }
      const keys = Array.from({ length: DEPTH }, () => Math.floor(Math.random() * acked));
      c.send(keys.map((k) => `get run_${k}\r\n`).join(""));
      const expected = keys.map((k) => `VALUE run_${k} 0 20\r\n${value(k)}\r\nEND\r\n`).join("");
      let replies = "";
      while (replies.split("END\r\n").length <= DEPTH && !replies.includes("ERROR"))
        replies += await c.readUntil("\r\n", 15_000);
      gets += DEPTH;
      if (replies !== expected) failures.push(`gets: ${replies.slice(0, 200)}`);
    }
    c.close();
  })();
  await new Promise((r) => setTimeout(r, 1000));
  const before = acked;
  await killMaster();
  await new Promise((r) => setTimeout(r, 1000));
  running = false;
  await Promise.all([setLoop, getLoop]);
  const metrics = await (await fetch(`http://127.0.0.1:${proxy.httpPort}/metrics`)).text();
  const retries = (kind: string) =>
    Number(new RegExp(`flare_proxy_retries_total\\{kind="${kind}"\\} (\\d+)`).exec(metrics)?.[1]);
  console.log(
    `pipelined seed scenario: ${acked} sets (${acked - before} after the kill), ${gets} gets; retried ${retries("write_new_master")} writes and ${retries("read_other_replica")} reads`,
  );
  expect(failures).toEqual([]);
  // Runs did meet the dead master, and were retried request by request.
  expect(retries("write_new_master")).toBeGreaterThan(0);
  expect(retries("read_other_replica")).toBeGreaterThan(0);
  expect(acked - before).toBeGreaterThan(1000);
  expect(gets).toBeGreaterThan(1000);
}

describe("the seed scenario through the proxy", () => {
  it("memcached front: kill -9 of the master, every set succeeds, every get returns its value", async () => {
    await scenario("tcp");
  });

  it("memcached front, pipelined 32 deep: every set of every packet succeeds, every get returns its value", async () => {
    await pipelinedScenario();
  });

  it("HTTP API: kill -9 of the master, every PUT succeeds, every GET returns its value", async () => {
    await scenario("http");
  });

  it("the Worker under wrangler: kill -9 of the master, every PUT succeeds, every GET returns its value", async () => {
    await scenario("worker");
  });
});
