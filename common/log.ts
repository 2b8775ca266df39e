/**
 * Structured logs: one JSON line per event on stderr, so a human can read the `msg` and a machine
 * can filter on the fields. Silenced with FLARE_LOG=silent (tests that do not read logs).
 */
type Level = "debug" | "info" | "warn" | "error";
const rank: Record<Level | "silent", number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 99 };

function threshold(): number {
  const wanted = process.env.FLARE_LOG as Level | "silent" | undefined;
  return rank[wanted ?? "info"] ?? rank.info;
}

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

function replacer(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Error) return { name: value.name, message: value.message };
  return value;
}

export function createLogger(base: Record<string, unknown> = {}): Logger {
  const min = threshold();
  const emit = (level: Level, msg: string, fields?: Record<string, unknown>): void => {
    if (rank[level] < min) return;
    const line = JSON.stringify({ t: new Date().toISOString(), level, msg, ...base, ...fields }, replacer);
    process.stderr.write(`${line}\n`);
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    child: (fields) => createLogger({ ...base, ...fields }),
  };
}
