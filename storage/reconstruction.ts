/**
 * Rebuilding a slave from its master (Flare's reconstruction): stream the master's partition with
 * `dump` and store each item with the master's version, while the master's live writes also arrive;
 * whichever version is newer wins. Then tell the index this node is active.
 */
import { connect } from "node:net";
import { ServerError } from "../common/errors.js";
import type { Logger } from "../common/log.js";
import { authenticate, type Credentials } from "../protocol/cluster-auth.js";
import type { Store } from "./store.js";

export interface ReconstructionOptions {
  /** `dump` is cluster traffic: the slave proves itself to its master first. */
  credentials: Credentials;
  host: string;
  port: number;
  partition: number;
  partitions: number;
  /** µs to wait per item, and KB/s (0 = unlimited): the master throttles its dump by these. */
  interval: number;
  bwlimit: number;
}

/** Streams the dump into the store; resolves with the number of items received. */
export function reconstruct(store: Store, o: ReconstructionOptions, log: Logger): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: o.host, port: o.port, noDelay: true });
    const args = o.partitions > 1 ? ` ${o.partition} ${o.partitions}` : o.bwlimit > 0 ? " -1 0" : "";
    socket.on("connect", () => {
      authenticate(socket, o.credentials, 5000).then(
        () => {
          socket.on("data", onData);
          socket.write(`dump ${o.interval}${args}${o.bwlimit > 0 ? ` ${o.bwlimit}` : ""}\r\n`);
        },
        (err: Error) =>
          finish(new ServerError("UNAVAILABLE", `dump from ${o.host}:${o.port} failed: ${err.message}`)),
      );
    });
    let buf: Buffer = Buffer.alloc(0);
    let received = 0;
    let done = false;
    // The value being read: its header, and the bytes still missing.
    let header: { key: string; flags: number; bytes: number; version: bigint; expire: number } | undefined;
    const finish = (err?: Error): void => {
      if (done) return;
      done = true;
      socket.destroy();
      if (err) reject(err);
      else resolve(received);
    };
    const onData = (chunk: Buffer): void => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      let pos = 0;
      for (;;) {
        if (header !== undefined) {
          if (buf.length - pos < header.bytes + 2) break;
          const value = Buffer.from(buf.subarray(pos, pos + header.bytes));
          pos += header.bytes + 2;
          const h = header;
          header = undefined;
          received++;
          // Flare's dump expiry is absolute seconds; a past one arrives already expired.
          Promise.resolve(store.store("set", h.key, value, h.flags, h.expire, h.version)).catch(
            (err: unknown) => finish(err as Error),
          );
          continue;
        }
        const nl = buf.indexOf(10, pos);
        if (nl < 0) break;
        const line = buf.toString("latin1", pos, nl).replace(/\r$/, "");
        pos = nl + 1;
        if (line === "END") {
          finish();
          return;
        }
        const m = /^VALUE (\S+) (\d+) (\d+) (\d+) (\d+)$/.exec(line);
        if (m === null) {
          finish(new ServerError("UNAVAILABLE", `dump from ${o.host}:${o.port} failed: ${line}`));
          return;
        }
        header = {
          key: m[1] as string,
          flags: Number(m[2]),
          bytes: Number(m[3]),
          version: BigInt(m[4] as string),
          expire: Number(m[5]),
        };
      }
      buf = pos === buf.length ? Buffer.alloc(0) : buf.subarray(pos);
    };
    socket.on("error", (err) =>
      finish(new ServerError("UNAVAILABLE", `dump from ${o.host}:${o.port} failed: ${err.message}`)),
    );
    socket.on("close", () =>
      finish(new ServerError("UNAVAILABLE", `dump from ${o.host}:${o.port} ended early`)),
    );
    log.info("reconstruction started", { master: `${o.host}:${o.port}`, partition: o.partition });
  });
}
