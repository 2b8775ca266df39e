/**
 * Health checks of one node, Flare's monitor made quicker: a `ping` every `interval`; a failed one
 * is retried after `retryWait` instead of a whole interval; `threshold` failures in a row mark the
 * node down. A dropped connection to the node (a killed process) starts a check at once.
 * The same connection carries map pushes (`node sync`).
 */
import type { Logger } from "../common/log.js";
import type { Credentials } from "../protocol/cluster-auth.js";
import { indexClock } from "../protocol/cluster-member.js";
import { LineClient, LineClientError, oneLine, untilEnd } from "../protocol/line-client.js";

export interface MonitorOptions {
  /** The monitor link carries map pushes: it proves itself to the node first. */
  credentials: Credentials;
  intervalMs: number;
  threshold: number;
  readTimeoutMs: number;
  retryWaitMs: number;
}

export interface MonitorEvents {
  down(): void;
  up(): void;
  /** Whether the map says the node is down (the monitor's count follows the map). */
  downInMap(): boolean;
  /** The current map as a push (`node sync ...`). */
  mapText(): string;
  /** Whether this index may act on nodes now (it leads): a deposed one neither checks nor pushes. */
  mayAct(): boolean;
}

export class NodeMonitor {
  private link: LineClient | undefined;
  private failures = 0;
  private running = true;
  private wake: (() => void) | undefined;
  private wakeRequested = false;
  /**
   * When the last ping that may have renewed the node's lease was sent (index clock): one it
   * answered OK, or one whose answer never came. A master's lease runs at most this long after it.
   */
  lastPingSentAt = 0;
  /** The last check found nothing listening on the node's port: its process is gone. */
  gone = false;
  /** When the first of the checks failing now failed (Unix ms); 0 while checks pass. */
  failingSince = 0;

  constructor(
    readonly host: string,
    readonly port: number,
    private readonly options: MonitorOptions,
    private readonly events: MonitorEvents,
    private readonly log: Logger,
  ) {
    void this.loop();
  }

  stop(): void {
    this.running = false;
    this.link?.close();
    this.checkNow();
  }

  /** Check before the interval is up (the connection dropped, or a proxy could not reach the node). */
  checkNow(): void {
    this.wakeRequested = true;
    this.wake?.();
  }

  /** Sends a map; resolves true when the node answered OK. `quiet`: a check, not news. */
  async push(text: string, quiet = false): Promise<boolean> {
    if (!this.events.mayAct()) return false;
    try {
      const link = await this.connect();
      const [reply] = await link.request(text, oneLine, this.options.readTimeoutMs);
      if (reply !== "OK") this.log.warn("map push refused", { node: this.name, reply });
      return reply === "OK";
    } catch (err) {
      if (!quiet) this.log.warn("map push failed", { node: this.name, err: (err as Error).message });
      return false;
    }
  }

  /** How far the node got in its master's replication stream (`stats` replication_seq), if it says. */
  async replicationSeq(): Promise<number | undefined> {
    const seq = (await this.stats())?.get("replication_seq");
    return seq === undefined ? undefined : Number(seq);
  }

  /** The node's `stats`, or undefined when it does not answer. */
  async stats(): Promise<Map<string, string> | undefined> {
    if (!this.events.mayAct()) return undefined;
    try {
      const link = await this.connect();
      const lines = await link.request("stats\r\n", untilEnd, this.options.readTimeoutMs);
      const stats = new Map<string, string>();
      for (const line of lines) {
        const [tag, name, ...value] = line.split(" ");
        if (tag === "STAT" && name !== undefined) stats.set(name, value.join(" "));
      }
      return stats;
    } catch {
      return undefined;
    }
  }

  private get name(): string {
    return `${this.host}:${this.port}`;
  }

  private async loop(): Promise<void> {
    let wait = this.options.intervalMs;
    while (this.running) {
      await this.sleep(wait);
      if (!this.running) return;
      if (!this.events.mayAct()) {
        wait = this.options.intervalMs;
        continue;
      }
      const threshold = this.options.threshold;
      // Follow the map: an operator may have marked the node down or up meanwhile.
      if (this.events.downInMap()) this.failures = Math.max(this.failures, threshold);
      else if (this.failures >= threshold) this.failures = 0;
      // A node the map has down (a master that froze, say, and was replaced) hears the map that
      // says so before anything else: it must not act on its old role once it is back.
      if (
        this.events.downInMap()
          ? (await this.push(this.events.mapText(), true)) && (await this.ping())
          : await this.ping()
      ) {
        if (this.failures >= threshold || this.events.downInMap()) this.events.up();
        this.failures = 0;
        this.failingSince = 0;
        wait = this.options.intervalMs;
        continue;
      }
      this.failures++;
      if (this.failingSince === 0) this.failingSince = Date.now();
      this.log.debug("check failed", { node: this.name, failures: this.failures });
      if (this.failures === threshold) this.events.down();
      wait = this.failures < threshold ? this.options.retryWaitMs : this.options.intervalMs;
    }
  }

  private async ping(): Promise<boolean> {
    let link: LineClient;
    try {
      link = await this.connect();
      this.gone = false;
    } catch (err) {
      this.gone = err instanceof LineClientError && err.code === "ECONNREFUSED";
      return false;
    }
    // When it was sent, on a clock that runs on across index restarts: a master's lease counts from
    // it. A node renews its lease only on a ping it answers OK; one whose answer never came may
    // have been one.
    const sentAt = indexClock();
    try {
      const [reply] = await link.request(`ping ${sentAt}\r\n`, oneLine, this.options.readTimeoutMs);
      if (reply === "OK") this.lastPingSentAt = sentAt;
      return reply === "OK";
    } catch {
      this.lastPingSentAt = sentAt;
      return false;
    }
  }

  private async connect(): Promise<LineClient> {
    if (this.link !== undefined && !this.link.closed) return this.link;
    const link = await LineClient.connect(
      this.host,
      this.port,
      this.options.readTimeoutMs,
      this.options.credentials,
    );
    this.link = link;
    link.onClose(() => {
      if (this.running) this.checkNow();
    });
    return link;
  }

  private sleep(ms: number): Promise<void> {
    if (this.wakeRequested) {
      this.wakeRequested = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const finish = (): void => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(finish, ms);
      this.wake = () => {
        this.wakeRequested = false;
        finish();
      };
    });
  }
}
