/** External programs some tests drive (memccapable, memcached). `npm test` installs them when it can. */
import { execFileSync } from "node:child_process";

export function hasCommand(name: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${name}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** Fails the test with how to get the tool; never skips silently. */
export function requireCommand(name: string, debianPackage: string): void {
  if (!hasCommand(name)) {
    throw new Error(
      `${name} is not installed: apt-get install -y ${debianPackage} (npm test does this itself when run as root)`,
    );
  }
}
