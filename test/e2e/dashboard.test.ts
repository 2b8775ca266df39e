/**
 * The index's dashboard in a real browser (Debian's Chromium driven by playwright-core): it shows
 * the map of a running cluster, follows a kill -9 failover by itself, lists it in the timeline,
 * and sends admin actions with the admin credentials only, after a confirmation.
 * FLARE_SCREENSHOTS=docs writes the before/after screenshots the README shows into docs/.
 */
import { mkdtempSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { peerAdmin, type SeedLayout, seedLayout } from "../helpers/cluster.js";
import { Load } from "../helpers/load.js";
import { stopAll } from "../helpers/processes.js";
import { requireCommand } from "../helpers/tools.js";

afterAll(stopAll);

const TOKEN = "dashboard-secret";
const forDocs = process.env.FLARE_SCREENSHOTS === "docs";
const shots = forDocs ? "docs" : mkdtempSync(join(tmpdir(), "flare-dashboard-"));
/** For the README's pictures, the charts get time to fill. */
const settle = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, forDocs ? ms : 0));

/** Chromium as this machine runs it: no sandbox (root), nothing fetched from the network. */
const BROWSER_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

describe("dashboard: the cluster in a browser", () => {
  let cluster: SeedLayout;
  let browser: Browser;
  let page: Page;
  let origin: string;
  const load = new Load();
  /** Every URL the page asked for. */
  const requested: string[] = [];

  beforeAll(async () => {
    requireCommand("chromium", "chromium");
    [cluster, browser] = await Promise.all([
      seedLayout(TOKEN),
      chromium.launch({ executablePath: "/usr/bin/chromium", args: BROWSER_ARGS }),
    ]);
    origin = `http://127.0.0.1:${cluster.index.httpPort}`;
    await load.start(cluster.proxy.port);
    page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
    page.on("request", (r) => requested.push(r.url()));
  }, 60_000);
  afterAll(async () => {
    await load.stop();
    await browser?.close();
    await cluster?.stop();
  });

  const node = (port: number): string => `[data-node$=":${port}"]`;

  it("shows the master and its slave, then a kill -9 failover within 2 s, with its timeline entry", async () => {
    await page.goto(`${origin}/`);
    await page.locator(`${node(cluster.master.port)}[data-role="master"][data-state="active"]`).waitFor();
    await page.locator(`${node(cluster.slave.port)}[data-role="slave"][data-state="active"]`).waitFor();
    await expect.poll(() => page.locator("#live").textContent()).toContain("live");
    // The load shows in the master's figures once a sample or two came in.
    await expect
      .poll(() => page.locator(`${node(cluster.master.port)} [data-field="items"]`).textContent(), {
        timeout: 10_000,
      })
      .toMatch(/^[1-9]/);
    await settle(30_000);
    await page.screenshot({ path: join(shots, "dashboard-before.png"), fullPage: true });

    const killed = Date.now();
    cluster.master.proc.kill("SIGKILL");
    await page
      .locator(`${node(cluster.master.port)}[data-state="down"]`)
      .waitFor({ timeout: 2000 - (Date.now() - killed) });
    await page
      .locator(`${node(cluster.slave.port)}[data-role="master"][data-state="active"]`)
      .waitFor({ timeout: Math.max(1, 2000 - (Date.now() - killed)) });
    const shownMs = Date.now() - killed;
    const entry = page.locator('#timeline li[data-kind="failover"]').first();
    await expect
      .poll(() => entry.textContent(), { timeout: 1000 })
      .toContain(`:${cluster.slave.port} promoted`);
    expect(await entry.textContent()).toMatch(/took \d+ ms/);
    console.log(`dashboard: the failover showed ${shownMs} ms after kill -9`);
    await settle(15_000);
    await page.screenshot({ path: join(shots, "dashboard-after.png"), fullPage: true });
    // A phone's width, in the dark.
    await page.emulateMedia({ colorScheme: "dark" });
    await page.setViewportSize({ width: 400, height: 860 });
    await page.waitForTimeout(300);
    await page.screenshot({ path: join(shots, "dashboard-narrow-dark.png") });
    await page.emulateMedia({ colorScheme: "light" });
    await page.setViewportSize({ width: 1000, height: 900 });
    for (const f of ["dashboard-before.png", "dashboard-after.png", "dashboard-narrow-dark.png"])
      expect(statSync(join(shots, f)).size).toBeGreaterThan(10_000);
  }, 90_000);

  it("asks before an admin action, refuses it without the admin token, takes it with", async () => {
    const balanceOf = async (port: number): Promise<number> => {
      const map = (await (await fetch(`${origin}/v1/cluster`)).json()) as {
        nodes: { port: number; balance: number }[];
      };
      return map.nodes.find((n) => n.port === port)?.balance ?? -1;
    };
    const master = page.locator(node(cluster.slave.port));
    const before = await balanceOf(cluster.slave.port);
    await master.locator("[data-balance]").fill("3");

    // Dismissed: nothing is sent.
    page.once("dialog", (d) => void d.dismiss());
    await master.locator('button[data-action="balance"]').click();
    await page.waitForTimeout(300);
    expect(await page.locator("#message").textContent()).toBe("");

    page.once("dialog", (d) => void d.accept());
    await master.locator('button[data-action="balance"]').click();
    await expect.poll(() => page.locator("#message").textContent()).toContain("refused: UNAUTHORIZED");
    expect(await balanceOf(cluster.slave.port)).toBe(before);

    await page.locator("#token").fill(TOKEN);
    page.once("dialog", (d) => void d.accept());
    await master.locator('button[data-action="balance"]').click();
    await expect.poll(() => page.locator("#message").textContent()).toMatch(/^done: map v\d+$/);
    expect(await balanceOf(cluster.slave.port)).toBe(3);
    await expect.poll(() => page.locator(`${node(cluster.slave.port)} .balance b`).textContent()).toBe("3");

    // What the index refuses, the page refuses, with the index's reason (flare admin, over the
    // text protocol, hears Flare's "failed to set role" for the same change).
    const host = (await master.getAttribute("data-node"))?.split(":")[0];
    expect(
      await peerAdmin(cluster.index.port, TOKEN, `node role ${host} ${cluster.slave.port} master 0 0`),
    ).toMatch(/^SERVER_ERROR /);
    await master.locator("[data-balance]").fill("0");
    page.once("dialog", (d) => void d.accept());
    await master.locator('button[data-action="balance"]').click();
    await expect
      .poll(() => page.locator("#message").textContent())
      .toMatch(/^refused: REFUSED: partition 0 would have no read weight/);
    expect(await balanceOf(cluster.slave.port)).toBe(3);
  }, 30_000);

  it("is served whole by the index: nothing from elsewhere, under 300 KB", async () => {
    expect(requested.length).toBeGreaterThan(0);
    for (const url of requested) expect(url.startsWith(`${origin}/`), url).toBe(true);
    let total = 0;
    for (const path of new Set(requested.map((u) => new URL(u).pathname))) {
      if (path.startsWith("/v1/")) continue;
      const res = await fetch(`${origin}${path}`);
      expect(res.status, path).toBe(200);
      total += (await res.arrayBuffer()).byteLength;
    }
    console.log(`dashboard: page and assets ${total} bytes`);
    expect(total).toBeLessThan(300_000);
    // Names that are no file of the page, hostile ones included, are a plain 404.
    for (const name of ["__proto__", "constructor", "toString", "..%2F..%2Fpackage.json", "app.js%00"])
      expect((await fetch(`${origin}/dashboard/${name}`)).status, name).toBe(404);
  });
});
