/** Client load for failover tests: one request in flight, every acknowledged write remembered. */
import { RawClient } from "./raw-client.js";

/** Sets of unique keys and gets of acknowledged ones through the proxy, one request at a time. */
export class Load {
  readonly acked = new Map<string, string>();
  failedSets: string[] = [];
  wrongGets: string[] = [];
  private running = true;
  private done: Promise<void> | undefined;

  async start(port: number, host?: string): Promise<void> {
    const c = await RawClient.open(port, host);
    this.done = (async () => {
      for (let i = 0; this.running; i++) {
        const key = `fk_${i}`;
        const value = `value-${i}-${"x".repeat(i % 17)}`;
        const reply = await c.ask(`set ${key} 0 0 ${value.length}\r\n${value}\r\n`);
        if (reply === "STORED\r\n") this.acked.set(key, value);
        else this.failedSets.push(`${key}: ${reply.trim()}`);
        if (i % 3 === 0 && this.acked.size > 0) {
          const probe = `fk_${Math.floor(Math.random() * i)}`;
          const want = this.acked.get(probe);
          if (want === undefined) continue;
          const got = await c.ask(`get ${probe}\r\n`, "END\r\n");
          if (got !== `VALUE ${probe} 0 ${want.length}\r\n${want}\r\nEND\r\n`)
            this.wrongGets.push(`${probe}: ${got.trim()}`);
        }
      }
      c.close();
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
  }
}

/** Every acknowledged key, read from `port` in batches: the ones missing or different. */
export async function missing(port: number, acked: Map<string, string>, host?: string): Promise<string[]> {
  const keys = [...acked.keys()];
  const lost: string[] = [];
  const c = await RawClient.open(port, host);
  for (let i = 0; i < keys.length; i += 100) {
    const batch = keys.slice(i, i + 100);
    const reply = await c.ask(`get ${batch.join(" ")}\r\n`, "END\r\n");
    for (const key of batch) {
      const want = acked.get(key) as string;
      if (!reply.includes(`VALUE ${key} 0 ${want.length}\r\n${want}\r\n`)) lost.push(key);
    }
  }
  c.close();
  return lost;
}
