import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { clusterSchema } from "../../cli/cluster.js";
import { BEGIN, configReference, END, withReference } from "../../cli/docs.js";
import { indexSchema } from "../../index/config.js";
import { proxySchema } from "../../proxy/config.js";
import { nodeSchema } from "../../storage/config.js";

const README = readFileSync(fileURLToPath(new URL("../../README.md", import.meta.url)), "utf8");

describe("README", () => {
  it("holds the config reference generated from the schemas (npm run docs rewrites it)", () => {
    expect(README).toContain(BEGIN);
    expect(README).toContain(END);
    expect(withReference(README)).toBe(README);
  });

  it("the reference lists every key of every role, with its default", () => {
    const reference = configReference();
    for (const schema of [indexSchema, nodeSchema, proxySchema, clusterSchema]) {
      for (const key of Object.keys(schema.shape)) expect(reference).toContain(`| \`${key}\` |`);
    }
    expect(reference).toContain("| `monitor-interval` | 5 | 1–3600 |");
    expect(reference).toContain("| `item-size-max` | 1m | size, 1k–1g |");
    expect(reference).toContain("| `key-hash-algorithm` | simple | simple, crc32, jenkins |");
  });
});
