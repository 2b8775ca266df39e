/**
 * The node map on disk: `<data-dir>/flare-index.json`, replaced atomically on every change (write a
 * temp file, fsync, rename, fsync the directory). A file that does not parse stops start-up and is
 * left as it is for an operator to look at.
 */
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { ConfigError } from "../common/errors.js";
import { type NodeMapData, nodeMapSchema } from "../protocol/node-map.js";

const FILE = "flare-index.json";

export function mapFile(dir: string): string {
  return join(dir, FILE);
}

export function loadMap(dir: string): NodeMapData | undefined {
  const file = mapFile(dir);
  if (!existsSync(file)) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new ConfigError(
      `data-dir: ${file} is corrupt (${(err as Error).message}); fix or move it away, it is not overwritten`,
    );
  }
  const result = nodeMapSchema.safeParse(parsed);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new ConfigError(
      `data-dir: ${file} is not a node map (${issue?.path.join(".")}: ${issue?.message}); fix or move it away`,
    );
  }
  return result.data;
}

export function saveMap(dir: string, data: NodeMapData): void {
  mkdirSync(dir, { recursive: true });
  const file = mapFile(dir);
  const tmp = `${file}.tmp`;
  const fd = openSync(tmp, "w");
  try {
    writeSync(fd, `${JSON.stringify(data, null, 2)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  const dirFd = openSync(dir, "r");
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}
