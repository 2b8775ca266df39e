/**
 * Cluster authentication: how a connection proves it is a cluster peer (index, node, proxy,
 * operator) before it may send cluster traffic (map pushes, role changes, replication, dumps,
 * explicit versions). A challenge-response on the ports that already exist, so Flare's port layout
 * stays and the secret never crosses the wire:
 *
 *   peer:   cluster hello
 *   server: CHALLENGE <server-nonce>
 *   peer:   cluster auth <role> <peer-nonce> <hex HMAC-SHA256(secret, role|server-nonce|peer-nonce)>
 *   server: OK                      (or CLIENT_ERROR cluster authentication failed, and it closes)
 *
 * Open mode (no secret, Flare's configs) runs the same exchange and accepts any proof: only what
 * asks to be a peer is one, so plain clients still get plain memcached.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { Socket } from "node:net";
import { LineReader } from "./line-reader.js";

export const PEER_ROLES = ["index", "node", "proxy", "admin"] as const;
export type PeerRole = (typeof PEER_ROLES)[number];

export const AUTH_FAILED = "CLIENT_ERROR cluster authentication failed";

/** The secret of a cluster, or open mode (undefined). */
export class ClusterSecret {
  constructor(readonly token: string | undefined) {}

  get open(): boolean {
    return this.token === undefined;
  }

  proof(role: PeerRole, serverNonce: string, peerNonce: string): string {
    return createHmac("sha256", this.token ?? "")
      .update(`flare-ts cluster v1|${role}|${serverNonce}|${peerNonce}`)
      .digest("hex");
  }

  verify(role: PeerRole, serverNonce: string, peerNonce: string, proof: string): boolean {
    if (this.open) return true;
    const want = Buffer.from(this.proof(role, serverNonce, peerNonce), "latin1");
    const got = Buffer.from(proof, "latin1");
    return got.length === want.length && timingSafeEqual(got, want);
  }
}

/** Where a server keeps one connection's side of the exchange. */
export interface AuthSession {
  nonce?: string;
  /** Set once the connection proved the secret: what it said it is. */
  peer?: PeerRole;
}

/**
 * The server's answer to a `cluster ...` line (`words` split on spaces), or undefined when the line
 * is not one. `fatal`: the reply goes out and the connection closes.
 */
export function answerCluster(
  secret: ClusterSecret,
  session: AuthSession,
  words: readonly string[],
): { line: string; fatal?: true } | undefined {
  if (words[0] !== "cluster") return undefined;
  if (words[1] === "hello" && words.length === 2) {
    session.nonce = randomBytes(16).toString("hex");
    return { line: `CHALLENGE ${session.nonce}` };
  }
  if (words[1] === "auth" && words.length === 5) {
    const role = words[2] as PeerRole;
    const nonce = session.nonce;
    session.nonce = undefined;
    const peerNonce = words[3] as string;
    if (
      nonce !== undefined &&
      PEER_ROLES.includes(role) &&
      /^[0-9a-f]{16,64}$/.test(peerNonce) &&
      secret.verify(role, nonce, peerNonce, words[4] as string)
    ) {
      session.peer = role;
      return { line: "OK" };
    }
    return { line: AUTH_FAILED, fatal: true };
  }
  return { line: "ERROR" };
}

/** What a peer needs to open an authenticated connection. */
export interface Credentials {
  secret: ClusterSecret;
  role: PeerRole;
}

export class ClusterAuthError extends Error {}

/**
 * Runs the peer's side on a connected socket and resolves once the server said OK. Reads only the
 * two reply lines, so the socket carries on clean; its own data listeners are added after.
 */
export function authenticate(socket: Socket, credentials: Credentials, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const reader = new LineReader();
    let challenged = false;
    const done = (err?: Error): void => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("close", onClose);
      if (err === undefined) resolve();
      else {
        socket.destroy();
        reject(err);
      }
    };
    const onData = (d: Buffer): void => {
      for (const line of reader.push(d)) {
        if (!challenged) {
          const m = /^CHALLENGE ([0-9a-f]{16,64})$/.exec(line);
          if (m === null) {
            done(new ClusterAuthError(`not a flare-ts cluster port (answered '${line}')`));
            return;
          }
          challenged = true;
          const peerNonce = randomBytes(16).toString("hex");
          const { secret, role } = credentials;
          socket.write(
            `cluster auth ${role} ${peerNonce} ${secret.proof(role, m[1] as string, peerNonce)}\r\n`,
          );
        } else {
          done(
            line === "OK"
              ? undefined
              : new ClusterAuthError(
                  `cluster authentication refused (${line}): is the cluster-token the same on every role?`,
                ),
          );
          return;
        }
      }
      if (reader.pending > 1024) done(new ClusterAuthError("not a flare-ts cluster port"));
    };
    const onClose = (): void => done(new ClusterAuthError("connection closed during authentication"));
    const timer = setTimeout(
      () => done(new ClusterAuthError(`no authentication reply within ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.on("data", onData);
    socket.on("close", onClose);
    socket.write("cluster hello\r\n");
  });
}
