/**
 * Flare-style configuration: a `key = value` file (`-f`), overridden by `--key value` flags, validated
 * by a zod object whose keys are the config keys themselves. Unknown keys and bad values stop start-up
 * with one line naming the key; Flare keys that mean nothing here are accepted with a warning.
 */
import { readFileSync } from "node:fs";
import { z } from "zod";
import { ConfigError } from "./errors.js";
import type { Logger } from "./log.js";

export type RawConfig = Map<string, string>;

/** Parses flarei/flared config text: `key = value`, `#` comments, blank lines. */
export function parseConfigText(text: string, source = "config"): RawConfig {
  const out: RawConfig = new Map();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] ?? "").trim();
    if (line === "" || line.startsWith("#")) continue;
    const eq = line.indexOf("=");
    if (eq <= 0) throw new ConfigError(`${source}:${i + 1}: expected 'key = value', got '${line}'`);
    out.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim());
  }
  return out;
}

/** Flags that are switches (no value), as in Flare's command line. */
const SWITCHES = new Set(["daemonize", "stderr", "help", "version"]);

/** Splits argv into the config file path and `--key value` / `--key=value` overrides. */
export function parseFlags(argv: readonly string[]): { file?: string; flags: RawConfig } {
  const flags: RawConfig = new Map();
  let file: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === "-f" || arg === "--config") {
      file = argv[++i];
      if (file === undefined) throw new ConfigError(`${arg}: needs a file path`);
      continue;
    }
    if (!arg.startsWith("--"))
      throw new ConfigError(`unexpected argument '${arg}' (options are --key value)`);
    const body = arg.slice(2);
    const eq = body.indexOf("=");
    if (eq > 0) {
      flags.set(body.slice(0, eq), body.slice(eq + 1));
    } else if (SWITCHES.has(body)) {
      flags.set(body, "true");
    } else {
      const value = argv[++i];
      if (value === undefined) throw new ConfigError(`--${body}: needs a value`);
      flags.set(body, value);
    }
  }
  return file === undefined ? { flags } : { file, flags };
}

export interface ConfigSpec<S extends z.ZodRawShape> {
  role: string;
  schema: z.ZodObject<S>;
  /** Flare keys accepted for compatibility that this implementation does not use. */
  ignored: ReadonlySet<string>;
}

export function loadConfig<S extends z.ZodRawShape>(
  spec: ConfigSpec<S>,
  argv: readonly string[],
  log?: Logger,
): z.infer<z.ZodObject<S>> {
  const { file, flags } = parseFlags(argv);
  const raw: RawConfig = file === undefined ? new Map() : parseConfigText(readConfigFile(file), file);
  for (const [k, v] of flags) raw.set(k, v);
  return validateConfig(spec, raw, log);
}

function readConfigFile(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
  }
}

export function validateConfig<S extends z.ZodRawShape>(
  spec: ConfigSpec<S>,
  raw: RawConfig,
  log?: Logger,
): z.infer<z.ZodObject<S>> {
  const known = spec.schema.shape;
  const input: Record<string, string> = {};
  for (const [key, value] of raw) {
    if (Object.hasOwn(known, key)) input[key] = value;
    else if (spec.ignored.has(key))
      log?.warn("config key ignored", { key, reason: `not used by flare-ts ${spec.role}` });
    else throw new ConfigError(`${key}: unknown ${spec.role} config key`);
  }
  const parsed = spec.schema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const key = String(issue?.path[0] ?? "config");
    const got = input[key];
    throw new ConfigError(
      `${key}: ${issue?.message ?? "invalid"}${got === undefined ? "" : ` (got '${got}')`}`,
    );
  }
  return parsed.data;
}

/** Value types shared by every role's schema: config values arrive as strings. */
export const cfg = {
  int(min: number, max: number) {
    return z
      .string()
      .regex(/^-?\d+$/, `expected an integer from ${min} to ${max}`)
      .transform(Number)
      .pipe(z.number().int().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`))
      .meta({ values: `${min}–${max}` });
  },
  /** Byte sizes: `1048576`, `1024k`, `64m`, `1g` (binary units). */
  bytes(min: number, max: number) {
    const units: Record<string, number> = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };
    return z
      .string()
      .regex(/^\d+\s*([kmg])?(i?b)?$/i, "expected a size such as 1048576, 512k, 64m or 1g")
      .transform((s) => {
        const m = /^(\d+)\s*([kmg])?/i.exec(s) as RegExpExecArray;
        return Number(m[1]) * (units[(m[2] ?? "").toLowerCase()] ?? 1);
      })
      .pipe(z.number().min(min, `must be at least ${min} bytes`).max(max, `must be at most ${max} bytes`))
      .meta({ values: `size, ${formatBytes(min)}–${formatBytes(max)}`, bytes: true });
  },
  bool() {
    return z
      .enum(["true", "false", "on", "off", "yes", "no", "1", "0"])
      .transform((s) => ["true", "on", "yes", "1"].includes(s))
      .meta({ values: "true/false" });
  },
  str() {
    return z.string().min(1, "must not be empty").meta({ values: "text" });
  },
};

/** 1048576 -> "1m": sizes as a config file would write them. */
export function formatBytes(n: number): string {
  for (const [unit, size] of [
    ["g", 1024 ** 3],
    ["m", 1024 ** 2],
    ["k", 1024],
  ] as const) {
    if (n >= size && n % size === 0) return `${n / size}${unit}`;
  }
  return String(n);
}
