/**
 * The node map in etcd, shared by several index processes (Flare's `index-db = zookeeper://...`,
 * on etcd). Under `<prefix>/`: `leader` (the leading index's address, held by its lease) and `map`
 * (the node map as JSON).
 *
 * - Election: an index leads once it created `leader` under a lease it keeps alive; the others
 *   watch that key and try again when it goes (its lease ran out, or it resigned).
 * - Fencing: every map it stores is a transaction that holds only while `leader` still carries
 *   its lease and `map` is the version it last saw, so two indexes can never both change the map.
 *   It also counts itself leader only until its lease could have run out since the last keepalive
 *   etcd answered: frozen or cut off, it stops acting (monitoring, pushing) before another index
 *   can be elected, without waiting to hear it lost.
 * - Followers take each map the leader stores from a watch.
 */
import { Etcd3, type Lease, type Namespace, type Watcher } from "etcd3";
import type { Logger } from "../common/log.js";
import { type NodeMapData, nodeMapSchema } from "../protocol/node-map.js";
import { type MapStore, NotLeaderError, type StoreEvents } from "./map-store.js";

export interface EtcdStoreOptions {
  /** Client URLs, `http://host:port`. */
  hosts: string[];
  /** Keys live under `<prefix>/`. */
  prefix: string;
  /** Seconds of the leader's lease: how long a dead leader holds the cluster without one. */
  leaseTtl: number;
}

/** No read answered for this long: etcd is taken to have no quorum. */
const QUORUM_STALE_MS = 2500;

/** How long a call to etcd may take before the change it serves is refused. */
const CALL_TIMEOUT_MS = 2000;

/** Margin under the lease's end after which a leader stops acting: etcd's clock and ours differ a little. */
const LEASE_MARGIN_MS = 250;

export class EtcdMapStore implements MapStore {
  readonly kind = "etcd";
  private readonly client: Etcd3;
  private readonly ns: Namespace;
  private lease: Lease | undefined;
  private leaseId = "";
  private elected = false;
  /** performance.now() until which the lease surely holds (from the last keepalive etcd answered). */
  private validUntil = 0;
  /** mod_revision of `map` as this index last saw it (0: no map yet). */
  private mapRevision = 0;
  private leaderName: string | undefined;
  private watcher: Watcher | undefined;
  private closed = false;
  private self = "";
  private events: StoreEvents | undefined;
  private campaigning = false;

  constructor(
    private readonly options: EtcdStoreOptions,
    private readonly log: Logger,
  ) {
    this.client = new Etcd3({
      hosts: options.hosts,
      dialTimeout: 2000,
      // Without a quorum etcd answers nothing: a change must fail, not wait (watches stay open).
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + CALL_TIMEOUT_MS }),
    });
    this.ns = this.client.namespace(`${options.prefix}/`);
  }

  get leading(): boolean {
    return this.elected && performance.now() < this.validUntil;
  }

  get handoverMs(): number {
    return this.options.leaseTtl * 1000;
  }

  get leader(): string | undefined {
    if (this.leading) return this.self;
    return this.trouble === undefined ? this.leaderName : undefined;
  }

  /**
   * etcd without a quorum answers no read: then no index can lead, and the leader key it still
   * shows names nobody in charge.
   */
  get trouble(): string | undefined {
    return performance.now() - this.quorumSeenAt > QUORUM_STALE_MS ? "etcd has no quorum" : undefined;
  }

  /** performance.now() of the last read etcd answered (a linearizable read needs a quorum). */
  private quorumSeenAt = performance.now();
  private health: NodeJS.Timeout | undefined;

  /** Reads the leader key every second: who leads, and whether etcd has a quorum. */
  private watchHealth(): void {
    this.health = setInterval(() => {
      this.ns
        .get("leader")
        .string()
        .then(
          (leader) => {
            this.quorumSeenAt = performance.now();
            this.leaderName = leader ?? undefined;
          },
          () => undefined,
        );
    }, 1000);
    this.health.unref();
  }

  async load(): Promise<NodeMapData | undefined> {
    const res = await this.ns.get("map").exec();
    const kv = res.kvs[0];
    if (kv === undefined) {
      this.mapRevision = 0;
      return undefined;
    }
    this.mapRevision = Number(kv.mod_revision);
    return parseMap(kv.value);
  }

  async start(self: string, events: StoreEvents): Promise<void> {
    this.self = self;
    this.events = events;
    this.watcher = await this.ns.watch().prefix("").create();
    this.watcher.on("put", (kv) => {
      const key = kv.key.toString();
      if (key.endsWith("leader")) this.leaderName = kv.value.toString();
      else if (key.endsWith("map") && !this.elected) {
        this.mapRevision = Number(kv.mod_revision);
        try {
          events.changed(parseMap(kv.value));
        } catch (err) {
          this.log.error("map in etcd is not a node map", { err });
        }
      }
    });
    this.watcher.on("delete", (kv) => {
      if (!kv.key.toString().endsWith("leader")) return;
      this.leaderName = undefined;
      if (!this.elected) void this.campaign();
    });
    const data = await this.load();
    if (data !== undefined) events.changed(data);
    const leader = await this.ns.get("leader").string();
    this.leaderName = leader ?? undefined;
    this.quorumSeenAt = performance.now();
    this.watchHealth();
    void this.campaign();
  }

  /** Tries to become leader; on failure waits for the leader key to go (the watch calls again). */
  private async campaign(): Promise<void> {
    if (this.campaigning || this.elected || this.closed) return;
    this.campaigning = true;
    try {
      const lease = this.client.lease(this.options.leaseTtl, { autoKeepAlive: true });
      let firedAt = performance.now();
      lease.on("keepaliveFired", () => {
        firedAt = performance.now();
      });
      lease.on("keepaliveSucceeded", (res) => {
        if (Number(res.TTL) > 0) this.validUntil = firedAt + Number(res.TTL) * 1000 - LEASE_MARGIN_MS;
      });
      lease.on("lost", (err) => {
        if (this.lease === lease) this.stepDown(`lease lost: ${err.message}`);
      });
      const grantedFrom = performance.now();
      const id = await lease.grant();
      const won = await this.ns
        .if("leader", "Create", "==", 0)
        .then(this.ns.put("leader").value(this.self).lease(id))
        .commit();
      if (!won.succeeded || this.closed) {
        await lease.revoke().catch(() => undefined);
        // The leader may have gone between our look and the watch: look again shortly.
        const current = await this.ns.get("leader").string();
        this.leaderName = current ?? undefined;
        if (current === null && !this.closed) setTimeout(() => void this.campaign(), 200).unref();
        return;
      }
      this.lease = lease;
      this.leaseId = id;
      this.validUntil = grantedFrom + this.options.leaseTtl * 1000 - LEASE_MARGIN_MS;
      this.elected = true;
      this.leaderName = this.self;
      // Lead from the map as stored now: a follower may have missed the last change.
      const data = await this.load();
      this.log.info("index elected leader", { self: this.self, mapVersion: data?.version ?? 0 });
      this.events?.elected(data);
    } catch (err) {
      this.log.warn("index election failed", { err: (err as Error).message });
      if (!this.closed) setTimeout(() => void this.campaign(), 500).unref();
    } finally {
      this.campaigning = false;
    }
  }

  private stepDown(reason: string): void {
    if (!this.elected) return;
    this.elected = false;
    this.validUntil = 0;
    const lease = this.lease;
    this.lease = undefined;
    this.leaseId = "";
    lease?.release();
    this.log.warn("index no longer leader", { self: this.self, reason });
    this.events?.deposed(reason);
    // Changes stored while it still counted itself leader (frozen, say) passed its watch by.
    this.load().then(
      (data) => {
        if (data !== undefined && !this.elected) this.events?.changed(data);
      },
      () => undefined,
    );
    if (!this.closed) setTimeout(() => void this.campaign(), 200).unref();
  }

  async save(data: NodeMapData): Promise<void> {
    if (!this.leading) {
      if (this.elected) this.stepDown("lease may have run out");
      throw new NotLeaderError("not the leader index");
    }
    let res: Awaited<ReturnType<ReturnType<Namespace["if"]>["commit"]>>;
    try {
      res = await this.ns
        .if("leader", "Lease", "==", this.leaseId)
        .and("map", "Mod", "==", this.mapRevision)
        .then(this.ns.put("map").value(JSON.stringify(data)))
        .commit();
    } catch (err) {
      throw new NotLeaderError(`etcd did not take the map: ${(err as Error).message}`);
    }
    if (!res.succeeded) {
      this.stepDown("the map or the leadership changed in etcd");
      throw new NotLeaderError("another index changed the map");
    }
    this.mapRevision = Number(res.header.revision);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.health);
    const lease = this.lease;
    this.elected = false;
    this.lease = undefined;
    await this.watcher?.cancel().catch(() => undefined);
    // Resigning hands over at once instead of after the lease's TTL.
    await lease?.revoke().catch(() => undefined);
    this.client.close();
  }
}

function parseMap(value: Buffer): NodeMapData {
  return nodeMapSchema.parse(JSON.parse(value.toString()));
}

/** `etcd://h1:2379,h2:2379/prefix` as client URLs and a key prefix. */
export function parseEtcdUrl(url: string): { hosts: string[]; prefix: string } | undefined {
  const m = /^etcd:\/\/([^/]+)(\/.*)?$/.exec(url);
  if (m === null) return undefined;
  const hosts = (m[1] as string).split(",").map((h) => `http://${h.trim()}`);
  if (hosts.some((h) => !/^http:\/\/[^:\s]+:\d{1,5}$/.test(h))) return undefined;
  const prefix = (m[2] ?? "/flare").replace(/\/+$/, "") || "/flare";
  return { hosts, prefix };
}
