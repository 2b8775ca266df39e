/** proxy/worker.ts under wrangler's local runtime (workerd), offline, for tests. */
import { fileURLToPath } from "node:url";

export async function startWorker(indexUrl: string): Promise<{ url: string; stop: () => Promise<void> }> {
  process.env.WRANGLER_SEND_METRICS = "false";
  process.env.WRANGLER_HIDE_BANNER = "true";
  process.env.CLOUDFLARE_CF_FETCH_ENABLED = "false";
  process.env.WRANGLER_LOG = "error";
  const { unstable_startWorker } = await import("wrangler");
  const worker = await unstable_startWorker({
    config: fileURLToPath(new URL("../../wrangler.toml", import.meta.url)),
    bindings: { INDEX_URL: { type: "plain_text", value: indexUrl } },
    dev: { server: { hostname: "127.0.0.1", port: 0 }, inspector: false },
  });
  await worker.ready;
  const url = (await worker.url).origin;
  return { url, stop: () => worker.dispose() };
}
