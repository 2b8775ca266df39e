/**
 * Requests back on the wire, for a proxy forwarding them to a node. noreply is never forwarded: the
 * proxy needs every reply to know a write landed (a meta request's q is: see the proxy).
 */
import type { Request } from "./request.js";

export function encodeRequest(req: Request): Buffer {
  switch (req.op) {
    case "get":
    case "gets":
      return Buffer.from(`${req.op} ${req.keys.join(" ")}\r\n`, "latin1");
    case "gat":
    case "gats":
      return Buffer.from(`${req.op} ${req.exptime} ${req.keys.join(" ")}\r\n`, "latin1");
    case "set":
    case "add":
    case "replace":
    case "append":
    case "prepend":
    case "cas": {
      const version = req.op === "cas" || req.version !== 0n ? ` ${req.version}` : "";
      const sync = req.sync === undefined ? "" : ` ${req.sync}`;
      return withBlock(
        `${req.op} ${req.key} ${req.flags} ${req.exptime} ${req.value.length}${version}${sync}\r\n`,
        req.value,
      );
    }
    case "incr":
    case "decr":
      return Buffer.from(
        `${req.op} ${req.key} ${req.delta}${req.sync === undefined ? "" : ` ${req.sync}`}\r\n`,
        "latin1",
      );
    case "delete": {
      const extra = req.version !== 0n ? ` ${req.hold} ${req.version}` : req.hold !== 0 ? ` ${req.hold}` : "";
      return Buffer.from(
        `delete ${req.key}${extra}${req.sync === undefined ? "" : ` ${req.sync}`}\r\n`,
        "latin1",
      );
    }
    case "touch":
      return Buffer.from(`touch ${req.key} ${req.exptime}\r\n`, "latin1");
    case "flush_all":
      return Buffer.from(`flush_all ${req.delay}\r\n`, "latin1");
    case "mg":
    case "ms":
    case "md":
    case "ma":
    case "me": {
      // Meta requests go as sent, quiet mode (q) included: the proxy closes them with an `mn`.
      const length = req.op === "ms" ? ` ${req.value.length}` : "";
      const flags =
        req.op === "me" ? (req.flags.binary ? " b" : "") : req.flags.tokens.map((t) => ` ${t}`).join("");
      const head = `${req.op} ${req.wireKey}${length}${flags}\r\n`;
      return req.op === "ms" ? withBlock(head, req.value) : Buffer.from(head, "latin1");
    }
    default:
      throw new Error(`${req.op} is not forwarded`);
  }
}

/** A request line and its data block, in one buffer. */
function withBlock(head: string, value: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(head.length + value.length + 2);
  out.latin1Write(head, 0);
  out.set(value, head.length);
  out[out.length - 2] = 13;
  out[out.length - 1] = 10;
  return out;
}
