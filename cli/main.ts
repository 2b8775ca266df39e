/**
 * `flare <role> [-f file] [--key value ...]`: one entry point for every role, as Flare's flarei and
 * flared binaries. A bad configuration stops start-up with one line naming the key.
 */
import { loadConfig } from "../common/config.js";
import { FlareError } from "../common/errors.js";
import { createLogger } from "../common/log.js";
import { VERSION } from "../common/version.js";

const USAGE = `usage: flare <command> [-f config-file] [--key value ...]

commands:
  node     run a storage node (flared): memcached text protocol, Flare admin commands, HTTP API
  index    run the index service (flarei): node map, health checks, failover, map pushes
  proxy    run a proxy: a memcached front that routes each key to its partition and hides failover
  cluster  run a whole local cluster (index, master, slave, proxy): what npm start does
           [-f cluster.conf] [--base-port 12120] [--storage-type memory|leveldb|redis] ...
  admin    operate a running cluster: stats nodes, role, state, remove, add-slave, add-partition, ping, dump
           (flare admin --help)
  bench    measure: a node against memcached; bench proxy|failover|replication (needs memcached,
           redis-server, nutcracker; npm run bench installs what it can)

Every config-file key is also a flag: flare node --server-port 11211 --http-port 11280
See README.md for every key.`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === "help" || command === "--help" || command === "-h") {
    process.stdout.write(`${USAGE}\n`);
    return command === undefined ? 2 : 0;
  }
  if (command === "--version" || command === "-v") {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  // Each command loads only its own role: a node's process does not hold the proxy's, the
  // index's or the admin's libraries.
  switch (command) {
    case "node": {
      const [{ nodeConfigSpec }, { startNode }] = await Promise.all([
        import("../storage/config.js"),
        import("../storage/node.js"),
      ]);
      const log = createLogger({ role: "node" });
      const config = loadConfig(nodeConfigSpec, rest, log);
      const node = await startNode(
        config,
        log.child({ node: `${config["server-name"]}:${config["server-port"]}` }),
      );
      await untilSignal();
      await node.stop();
      return 0;
    }
    case "index": {
      const [{ indexConfigSpec }, { startIndex }] = await Promise.all([
        import("../index/config.js"),
        import("../index/index-server.js"),
      ]);
      const log = createLogger({ role: "index" });
      const config = loadConfig(indexConfigSpec, rest, log);
      const index = await startIndex(config, log);
      await untilSignal();
      await index.stop();
      return 0;
    }
    case "proxy": {
      const [{ proxyConfigSpec }, { startProxy }] = await Promise.all([
        import("../proxy/config.js"),
        import("../proxy/node-entry.js"),
      ]);
      const log = createLogger({ role: "proxy" });
      const config = loadConfig(proxyConfigSpec, rest, log);
      const proxy = await startProxy(
        config,
        log.child({ proxy: `${config["server-name"]}:${config["server-port"]}` }),
      );
      await untilSignal();
      await proxy.stop();
      return 0;
    }
    case "cluster": {
      const { clusterConfigSpec, runCluster } = await import("./cluster.js");
      return runCluster(loadConfig(clusterConfigSpec, rest), untilSignal);
    }
    case "admin": {
      const { runAdmin } = await import("./admin.js");
      return runAdmin(rest);
    }
    case "bench": {
      const { runBench } = await import("../bench/run.js");
      await runBench();
      return 0;
    }
    default:
      process.stderr.write(`flare: unknown command '${command}'\n${USAGE}\n`);
      return 2;
  }
}

/** Resolves on the first SIGTERM or SIGINT; a second one exits at once. */
function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    const onSignal = (): void => {
      process.once("SIGTERM", () => process.exit(1));
      process.once("SIGINT", () => process.exit(1));
      resolve();
    };
    process.once("SIGTERM", onSignal);
    process.once("SIGINT", onSignal);
  });
}

main(process.argv.slice(2)).then(
  // Output still queued for a slow pipe (a dump) goes out first: the callback runs after it.
  (code) => process.stdout.write("", () => process.exit(code)),
  (err: unknown) => {
    if (err instanceof FlareError) {
      process.stderr.write(`flare: ${err.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`flare: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
