// Run before npm start/test/bench: installs dependencies on a fresh clone, then compiles to dist/.
import { execSync } from "node:child_process";
import { existsSync } from "node:fs";

const run = (cmd) => execSync(cmd, { stdio: "inherit" });
if (!existsSync("node_modules/.package-lock.json")) {
  console.error("prepare: node_modules missing, running npm ci");
  run("npm ci --no-audit --no-fund");
}
run("npx tsc -p tsconfig.json");
