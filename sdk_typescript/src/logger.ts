/**
 * Logging. The SDK writes its own lines (connections, failed steps) to a
 * `Logger`; `console` is the default, and any logger with the same four
 * methods (pino, winston, bunyan...) can be passed to `new Tether({ logger })`.
 */

/** The four methods the SDK calls; `console` has them. */
export interface Logger {
  debug(...args: unknown[]): void;
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}

type Level = "debug" | "info" | "warn" | "error";
const LEVELS: readonly Level[] = ["debug", "info", "warn", "error"];

/**
 * The default logger: `console`, prefixed with `tether:`, below
 * `TETHER_LOG_LEVEL` (default `info`) silent.
 */
export function defaultLogger(): Logger {
  const configured = (process.env.TETHER_LOG_LEVEL ?? "info").toLowerCase();
  const threshold = Math.max(0, LEVELS.indexOf(configured === "warning" ? "warn" : (configured as Level)));
  const write =
    (level: Level) =>
    (...args: unknown[]): void => {
      if (LEVELS.indexOf(level) >= threshold) console[level]("tether:", ...args);
    };
  return { debug: write("debug"), info: write("info"), warn: write("warn"), error: write("error") };
}

/** Fields that identify a run in log lines. */
export type LogFields = Record<string, string>;

/**
 * `logger` with these fields attached: through its `child()` when it has one
 * (pino, winston, bunyan), otherwise as is.
 */
export function withFields(logger: Logger, fields: LogFields): Logger {
  const child = (logger as { child?: unknown }).child;
  if (typeof child === "function") {
    const bound: unknown = (child as (fields: LogFields) => unknown).call(logger, fields);
    if (isLogger(bound)) return bound;
  }
  return logger;
}

/** A logger that writes nothing while `silent()` is true (a run replaying memoized steps). */
export function silencedWhile(logger: Logger, silent: () => boolean): Logger {
  const gate =
    (level: Level) =>
    (...args: unknown[]): void => {
      if (!silent()) logger[level](...args);
    };
  return { debug: gate("debug"), info: gate("info"), warn: gate("warn"), error: gate("error") };
}

function isLogger(value: unknown): value is Logger {
  return (
    typeof value === "object" &&
    value !== null &&
    LEVELS.every((level) => typeof (value as Record<string, unknown>)[level] === "function")
  );
}
