// Runs before npm start/test/bench: installs npm dependencies on a fresh clone, the Debian tools the
// tests drive when they are missing (when it may: root with apt-get), then compiles to dist/.
import { execSync } from "node:child_process";
import { existsSync } from "node:fs";

const run = (cmd) => execSync(cmd, { stdio: "inherit" });
const has = (cmd) => {
  try {
    execSync(`command -v ${cmd}`, { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
};

if (!existsSync("node_modules/.package-lock.json")) {
  console.error("prepare: node_modules missing, running npm ci");
  run("npm ci --no-audit --no-fund");
}

const event = process.env.npm_lifecycle_event;
if (event === "pretest" || event === "prebench") {
  // command -> Debian package
  const tools = {
    memccapable: "libmemcached-tools",
    memcached: "memcached",
    "redis-server": "redis-server",
    etcd: "etcd-server",
    // The dashboard's browser test: Debian's Chromium, driven by playwright-core.
    chromium: "chromium",
  };
  // The proxy bench runs twemproxy beside the flare-ts proxy; the tests do not need it.
  if (event === "prebench") tools.nutcracker = "nutcracker";
  const missing = Object.entries(tools).filter(([cmd]) => !has(cmd));
  if (missing.length > 0) {
    const pkgs = missing.map(([, pkg]) => pkg).join(" ");
    if (process.getuid?.() === 0 && has("apt-get")) {
      console.error(`prepare: installing ${pkgs}`);
      run(`(apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${pkgs}`);
    } else {
      console.error(
        `prepare: WARNING: ${pkgs} missing; tests that drive them will fail. Install: apt-get install -y ${pkgs}`,
      );
    }
  }
}

run("npx tsc -p tsconfig.json");
