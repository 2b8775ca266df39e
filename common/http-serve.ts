/** Serves a Hono app on Node; resolves with the bound address so callers can ask for port 0. */
import type { AddressInfo } from "node:net";
import { createAdaptorServer } from "@hono/node-server";
import type { Hono } from "hono";

export interface HttpServer {
  address: AddressInfo;
  close(): Promise<void>;
}

export function serveHttp(app: Hono, host: string, port: number): Promise<HttpServer> {
  const server = createAdaptorServer({ fetch: app.fetch, hostname: host, port });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve({
        address: server.address() as AddressInfo,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            if ("closeAllConnections" in server) server.closeAllConnections();
          }),
      });
    });
  });
}
