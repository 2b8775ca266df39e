/**
 * A client that sends one request a packet and stops reading its replies for a while, so that
 * the server's writes outgrow the kernel's socket buffers: the server must stop reading, keep its
 * replies in order, and go on once the client reads again.
 */
import { connect } from "node:net";

/** A value of `n` bytes with CR, LF and NUL in it, so replies are cut by length only. */
function binaryValue(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 37 + 11) & 0xff;
  return b;
}

/**
 * Sends `requests` gets of a value of `size` bytes, one a packet, with a set and a get of a fresh
 * key every 100th, while not reading; then reads everything. Returns what arrived and what
 * memcached would have sent.
 */
export async function slowReader(
  port: number,
  requests = 3000,
  size = 3000,
): Promise<{ got: Buffer; expected: Buffer }> {
  const socket = connect({ port, host: "127.0.0.1", noDelay: true });
  socket.on("error", () => {});
  await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
  const big = binaryValue(size);
  const parts: Buffer[] = [];
  let seen = 0;
  const expectedParts: Buffer[] = [Buffer.from("STORED\r\n")];
  socket.pause();
  socket.write(Buffer.concat([Buffer.from(`set big 7 0 ${size}\r\n`), big, Buffer.from("\r\n")]));
  const bigReply = Buffer.concat([Buffer.from(`VALUE big 7 ${size}\r\n`), big, Buffer.from("\r\nEND\r\n")]);
  for (let i = 0; i < requests; i++) {
    if (i % 100 === 0) {
      const v = `v${i}`;
      socket.write(`set s${i} 0 0 ${v.length}\r\n${v}\r\nget s${i}\r\n`);
      expectedParts.push(Buffer.from(`STORED\r\nVALUE s${i} 0 ${v.length}\r\n${v}\r\nEND\r\n`));
    } else {
      socket.write("get big\r\n");
      expectedParts.push(bigReply);
    }
    await new Promise((r) => setImmediate(r));
  }
  const expected = Buffer.concat(expectedParts);
  await new Promise((r) => setTimeout(r, 300));
  const all = new Promise<void>((resolve) => {
    socket.on("data", (d: Buffer) => {
      parts.push(d);
      seen += d.length;
      if (seen >= expected.length) resolve();
    });
    socket.on("close", () => resolve());
  });
  socket.resume();
  await all;
  socket.destroy();
  return { got: Buffer.concat(parts), expected };
}
