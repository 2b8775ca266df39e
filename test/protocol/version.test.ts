import { readFileSync } from "node:fs";
import { expect, it } from "vitest";
import { VERSION } from "../../common/version.js";

it("the reported version follows package.json", () => {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
    version: string;
  };
  expect(VERSION).toBe(`flare-ts-${pkg.version}`);
});
