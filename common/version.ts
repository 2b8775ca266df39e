/** Reported by `version` and `stats`. Kept in step with package.json by test/version.test.ts. */
export const VERSION = "flare-ts-0.1.0";
