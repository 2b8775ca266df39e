/**
 * Replies written straight to the socket's handle: what the kernel does not take at once waits, in
 * order, behind and before writes made through the socket's own stream; writes made while the
 * socket connects wait in the stream; the writer says when it is full and when it drained, and
 * whether the kernel took a write and all before it; a vanished peer closes the socket and throws
 * nothing.
 */
import { type AddressInfo, connect, createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { directWrites, SocketWriter } from "../../protocol/memcache/socket-writer.js";

const open: (Server | Socket)[] = [];

afterEach(() => {
  for (const s of open.splice(0)) {
    if ("destroy" in s) s.destroy();
    else s.close();
  }
});

/** A connected pair over loopback: the server's end and the client's, the client not reading. */
async function pair(): Promise<{ server: Socket; client: Socket }> {
  const srv = createServer();
  open.push(srv);
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const accepted = new Promise<Socket>((r) => srv.once("connection", r));
  const client = connect((srv.address() as AddressInfo).port, "127.0.0.1");
  client.pause();
  const server = await accepted;
  open.push(server, client);
  return { server, client };
}

/** Piece `i`: 16 KiB, every 4 bytes its number, so a piece out of place shows. */
function piece(i: number): Buffer {
  const b = Buffer.alloc(16 * 1024);
  for (let at = 0; at < b.length; at += 4) b.writeUInt32LE(i, at);
  return b;
}

describe("socket writer", () => {
  it("writes on this Node go straight to the handle", () => {
    expect(directWrites).toBe(true);
  });

  it("holds what the kernel cannot take in order, with stream writes between, and says when it drained", async () => {
    const { server, client } = await pair();
    let drains = 0;
    const writer = new SocketWriter(server, () => drains++);
    const sent: Buffer[] = [];
    let firstHeld = -1;
    // 64 MiB: far beyond what loopback's socket buffers hold while the client does not read.
    for (let i = 0; i < 4096; i++) {
      const b = piece(i);
      sent.push(b);
      // A few go through the stream itself, as other writers of the socket do.
      const taken = i % 1000 === 999 ? server.write(b) : writer.write(b);
      if (!taken && firstHeld < 0) firstHeld = i;
    }
    expect(firstHeld).toBeGreaterThan(0);
    expect(writer.full).toBe(true);
    expect(drains).toBe(0);

    const expected = Buffer.concat(sent);
    const got: Buffer[] = [];
    let seen = 0;
    const all = new Promise<void>((resolve) => {
      client.on("data", (d: Buffer) => {
        got.push(d);
        seen += d.length;
        if (seen >= expected.length) resolve();
      });
    });
    client.resume();
    await all;
    await new Promise<void>((r) => setImmediate(r));
    expect(seen).toBe(expected.length);
    expect(Buffer.concat(got).equals(expected)).toBe(true);
    expect(writer.full).toBe(false);
    expect(drains).toBeGreaterThanOrEqual(1);
  });

  it("says a write was taken only when the kernel took it and every write before it", async () => {
    const { server, client } = await pair();
    let drained: () => void = () => {};
    const writer = new SocketWriter(server, () => drained());
    expect(writer.write(Buffer.from("small\r\n"))).toBe(true);
    expect(writer.taken).toBe(true);
    let i = 0;
    while (writer.write(piece(i))) {
      expect(writer.taken).toBe(true);
      i++;
    }
    expect(writer.taken).toBe(false);
    // Behind a held write, a small one waits too: its bytes are not taken yet.
    writer.write(Buffer.from("after\r\n"));
    expect(writer.taken).toBe(false);
    // And so does one through the socket's own stream: the writer must not write past it.
    server.write(Buffer.from("stream\r\n"));
    expect(server.writableLength).toBeGreaterThan(0);
    const taken = new Promise<void>((resolve) => {
      drained = resolve;
    });
    client.on("data", () => {});
    client.resume();
    await taken;
    while (server.writableLength > 0) await new Promise((r) => setTimeout(r, 5));
    expect(writer.full).toBe(false);
    expect(writer.write(Buffer.from("again\r\n"))).toBe(true);
    expect(writer.taken).toBe(true);
  });

  it("writes made while the socket still connects wait in its stream, ahead of the writes after", async () => {
    const srv = createServer();
    open.push(srv);
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    const received: Buffer[] = [];
    const got = new Promise<void>((resolve) => {
      srv.once("connection", (s: Socket) => {
        open.push(s);
        s.on("data", (d: Buffer) => {
          received.push(d);
          if (Buffer.concat(received).length >= 3 * 16 * 1024) resolve();
        });
      });
    });
    const client = connect((srv.address() as AddressInfo).port, "127.0.0.1");
    open.push(client);
    const writer = new SocketWriter(client, () => {});
    expect(client.connecting).toBe(true);
    writer.write(piece(0));
    writer.write(piece(1));
    await new Promise<void>((r) => client.once("connect", () => r()));
    writer.write(piece(2));
    // Written past the stream while it connects, the pieces never all come: a closed socket or a
    // wait that times out.
    await Promise.race([got, new Promise((r) => client.once("close", r))]);
    expect(client.destroyed).toBe(false);
    expect(Buffer.concat(received).equals(Buffer.concat([piece(0), piece(1), piece(2)]))).toBe(true);
  }, 10_000);

  it("a peer that vanished closes the socket; writing on throws nothing", async () => {
    const { server, client } = await pair();
    const closed = new Promise<void>((r) => server.once("close", () => r()));
    server.on("error", () => {});
    const writer = new SocketWriter(server, () => {});
    client.resetAndDestroy();
    await new Promise((r) => setTimeout(r, 50));
    for (let i = 0; i < 100 && !server.destroyed; i++) writer.write(piece(i));
    expect(writer.write(piece(0))).toBe(false);
    await closed;
    expect(server.destroyed).toBe(true);
  });
});
