/**
 * The proxy's memcached transport against a scripted server on a real socket. Replies are read
 * into memory the connection reads into again once their takers copied them: a reply cut across
 * reads, and a view a taker kept, must come out intact.
 */
import { createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { NodeEntry } from "../../protocol/node-map.js";
import {
  type BackendConnection,
  MemcacheTransport,
  type Sent,
  SentTo,
} from "../../proxy/transports/memcache-transport.js";
import { TransportError } from "../../proxy/transports/transport.js";

const REPLIES: Record<string, string> = {
  "get a": "VALUE a 0 3\r\na\r\n\r\nEND\r\n",
  "get b": "SERVER_ERROR storage error\r\n",
  "get c": "END\r\n",
};

let server: Server | undefined;
afterEach(() => server?.close());

/** Answers each request line from REPLIES, one byte per write when `dribble`. */
async function scripted(dribble: boolean): Promise<NodeEntry> {
  server = createServer((socket) => {
    let buffered = "";
    socket.on("data", async (d) => {
      buffered += d.toString("latin1");
      let nl = buffered.indexOf("\r\n");
      while (nl >= 0) {
        const reply = REPLIES[buffered.slice(0, nl)] ?? "ERROR\r\n";
        buffered = buffered.slice(nl + 2);
        if (!dribble) socket.write(reply);
        else for (const ch of reply) socket.write(ch);
        nl = buffered.indexOf("\r\n");
      }
    });
  });
  return listening(server);
}

/** `server` listening on a free loopback port, as the map entry of an active master. */
async function listening(s: Server): Promise<NodeEntry> {
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const port = (s.address() as { port: number }).port;
  return {
    host: "127.0.0.1",
    port,
    role: "master",
    state: "active",
    partition: 0,
    balance: 1,
    threadType: 0,
  };
}

function run(transport: MemcacheTransport, node: NodeEntry, lines: string[]) {
  return new Promise<{ text: string; serverErrors: number }>((resolve, reject) => {
    const sent = new SentTo("values", (reply, start, end, serverErrors) => {
      if (reply instanceof TransportError) reject(reply);
      else resolve({ text: reply.toString("latin1", start, end), serverErrors });
    });
    transport.send(node, sent).bytes(Buffer.from(`${lines[0]}\r\n`));
    // Requests added in the same turn travel with the first and come back as one reply.
    for (const l of lines.slice(1)) {
      const more = transport.add(sent);
      expect(more).toBeDefined();
      more?.bytes(Buffer.from(`${l}\r\n`));
    }
  });
}

/** Takes its reply as the proxy's runs do: copies it, so the connection may read over it. */
class Copying implements Sent {
  readonly shape = "values" as const;
  requests = 1;
  deadline = 0;
  conn: BackendConnection | undefined = undefined;
  /** Where the reply was read: to compare with where the next one was. */
  memory: Buffer | undefined;

  constructor(private readonly take: (text: string) => void) {}

  replied(reply: Buffer | TransportError, start: number, end: number): boolean {
    if (reply instanceof TransportError) throw reply;
    this.memory = reply.subarray(start, end);
    this.take(reply.toString("latin1", start, end));
    return false;
  }
}

/** One get, taken by copying: the reply's text and where it was read. */
function copied(transport: MemcacheTransport, node: NodeEntry, key: string) {
  return new Promise<{ text: string; memory: Buffer }>((resolve) => {
    const sent: Copying = new Copying((text) => resolve({ text, memory: sent.memory as Buffer }));
    transport.send(node, sent).words("get", key);
  });
}

describe("memcached transport", () => {
  for (const dribble of [false, true]) {
    it(`a run of gets comes back as one reply, its SERVER_ERROR replies counted (${dribble ? "a byte at a time" : "whole"})`, async () => {
      const node = await scripted(dribble);
      const transport = new MemcacheTransport(1, 2000);
      const r = await run(transport, node, ["get a", "get b", "get c", "get a"]);
      expect(r.text).toBe(REPLIES["get a"] + REPLIES["get b"] + REPLIES["get c"] + REPLIES["get a"]);
      expect(r.serverErrors).toBe(1);
      // A value that holds CR LF is read by its length, not taken for a line.
      expect((await run(transport, node, ["get a"])).serverErrors).toBe(0);
      transport.close();
    });
  }

  it("replies cut across reads come out whole when their takers copy them", async () => {
    const node = await scripted(true);
    const transport = new MemcacheTransport(1, 2000);
    for (const key of ["a", "c", "a", "b", "a", "c"])
      expect((await copied(transport, node, key)).text).toBe(REPLIES[`get ${key}`]);
    transport.close();
  });

  it("a copied reply's memory is read into again; a view a taker kept is not", async () => {
    const node = await scripted(false);
    const transport = new MemcacheTransport(1, 2000);
    const first = await copied(transport, node, "a");
    const second = await copied(transport, node, "c");
    expect(second.memory.buffer).toBe(first.memory.buffer);
    expect(second.memory.byteOffset).toBe(first.memory.byteOffset);
    const kept = await new Promise<Buffer>((resolve) =>
      transport
        .send(
          node,
          new SentTo("values", (reply, start, end) => resolve((reply as Buffer).subarray(start, end))),
        )
        .words("get", "a"),
    );
    for (const key of ["c", "b", "c"]) await copied(transport, node, key);
    expect(kept.toString("latin1")).toBe(REPLIES["get a"]);
    transport.close();
  });

  it("a request can no longer join once its run was written", async () => {
    const node = await scripted(false);
    const transport = new MemcacheTransport(1, 2000);
    let sent: Sent | undefined;
    const reply = new Promise<void>((resolve) => {
      sent = new SentTo("values", () => resolve());
      transport.send(node, sent).words("get", "c");
    });
    await new Promise((r) => setImmediate(r));
    expect(transport.add(sent as Sent)).toBeUndefined();
    await reply;
    transport.close();
  });

  it("a read of replies first sends the requests waiting for the end of the turn", async () => {
    // The node holds its reply to the first request; the test releases it while a later request
    // waits in the transport, unsent: the reply's read must send that request before handing the
    // reply on.
    let held: Socket | undefined;
    const reached = new Promise<void>((resolve) => {
      server = createServer((socket) => {
        socket.on("data", (d) => {
          for (const _ of d.toString("latin1").split("\r\n").slice(0, -1)) {
            if (held === undefined) {
              held = socket;
              resolve();
            } else socket.write("END\r\n");
          }
        });
      });
    });
    const node = await listening(server as Server);
    const transport = new MemcacheTransport(1, 5000);
    let second: Sent | undefined;
    let secondWaited: boolean | undefined;
    const firstDone = new Promise<void>((resolve) => {
      const first = new SentTo("values", () => {
        // Still joinable: it was not written before this reply was handed on.
        if (second !== undefined) secondWaited = transport.add(second) !== undefined;
        resolve();
      });
      transport.send(node, first).words("get", "a");
    });
    await reached;
    // In one timer callback (before the loop's poll): the second request waits for the end of the
    // turn, and the first reply is already on its way; the poll reads that reply before the turn's
    // end would send the request.
    const secondDone = new Promise<void>((resolve) => {
      setTimeout(() => {
        second = new SentTo("values", () => resolve());
        transport.send(node, second).words("get", "b");
        held?.write("END\r\n");
        const until = performance.now() + 50;
        while (performance.now() < until);
      }, 1);
    });
    await Promise.all([firstDone, secondDone]);
    expect(secondWaited).toBe(false);
    transport.close();
  });

  it("a node that closes fails the requests it owes at once", async () => {
    server = createServer((socket) => socket.on("data", () => socket.destroy()));
    const node = await listening(server);
    // Its request timeout is longer than the test's: only the close can fail the request in time.
    const transport = new MemcacheTransport(1, 600_000);
    await expect(run(transport, node, ["get a"])).rejects.toBeInstanceOf(TransportError);
    transport.close();
  });
});
