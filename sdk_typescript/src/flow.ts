/**
 * Flow control options of `createFunction`: concurrency, throttle, rateLimit,
 * debounce, priority, batchEvents and singleton.
 *
 * The checks mirror the limits the control plane enforces at registration, so
 * a mistake fails when the function is declared; CEL expressions are checked
 * by the control plane only.
 */

import { type Duration, quote, toMilliseconds } from "./durations.js";
import { ConfigError } from "./errors.js";
import {
  ConcurrencyScope,
  type FunctionDefinition,
  SingletonMode,
} from "./gen/tether/v1/common.js";

const SECOND_MS = 1000;
const HOUR_MS = 3600 * SECOND_MS;
const DAY_MS = 24 * HOUR_MS;
const MAX_CONCURRENCY_LIMITS = 2;
const MAX_CONCURRENCY = 100_000;
const MAX_RATE = 100_000;
const MAX_BATCH_SIZE = 1000;

/**
 * At most `limit` runs execute at once, per value of `key` (a CEL expression
 * over `event`). `scope` `"app"` or `"global"` shares the count with the app's
 * (or every app's) functions that use the same key value.
 */
export interface ConcurrencyOption {
  limit: number;
  key?: string;
  scope?: "fn" | "app" | "global";
}

/** Start at most `limit` runs per `period` (per `key`), evenly spaced, `burst` at once; the rest wait. */
export interface ThrottleOption {
  limit: number;
  period: Duration;
  burst?: number;
  key?: string;
}

/** Start at most `limit` runs per `period` (per `key`); events over it start nothing (recorded as skipped). */
export interface RateLimitOption {
  limit: number;
  period: Duration;
  key?: string;
}

/** Start one run with the last event once none arrived for `period` (per `key`); `timeout` caps the wait. */
export interface DebounceOption {
  period: Duration;
  key?: string;
  timeout?: Duration;
}

/** `run`: a CEL expression over `event` giving seconds (-600 to 600) to start ahead of due runs, or behind. */
export interface PriorityOption {
  run: string;
}

/** One run for up to `maxSize` events (per `key`), started when full or `timeout` after the first. */
export interface BatchEventsOption {
  maxSize: number;
  timeout: Duration;
  key?: string;
}

/** At most one unfinished run per `key`: a new event is skipped, or cancels that run. */
export interface SingletonOption {
  key?: string;
  mode?: "skip" | "cancel";
}

/** The flow control options of a function, as `createFunction` takes them. */
export interface FlowOptions {
  concurrency?: number | ConcurrencyOption | readonly (number | ConcurrencyOption)[];
  throttle?: ThrottleOption;
  rateLimit?: RateLimitOption;
  debounce?: DebounceOption;
  priority?: PriorityOption;
  batchEvents?: BatchEventsOption;
  singleton?: SingletonOption;
}

const SCOPES: Readonly<Record<string, ConcurrencyScope>> = {
  fn: ConcurrencyScope.CONCURRENCY_SCOPE_FUNCTION,
  app: ConcurrencyScope.CONCURRENCY_SCOPE_APP,
  global: ConcurrencyScope.CONCURRENCY_SCOPE_GLOBAL,
};
const SINGLETON_MODES: Readonly<Record<string, SingletonMode>> = {
  skip: SingletonMode.SINGLETON_MODE_SKIP,
  cancel: SingletonMode.SINGLETON_MODE_CANCEL,
};

/** The flow control fields of a FunctionDefinition. */
export type FlowDefinition = Pick<
  FunctionDefinition,
  "concurrency" | "throttle" | "rateLimit" | "debounce" | "priority" | "batching" | "singleton"
>;

/**
 * The options as the wire carries them; throws ConfigError naming the
 * function, the option and the problem. `idempotency` and `cancelOn` say
 * whether the function uses them (batching excludes them).
 */
export function flowDefinition(
  functionId: string,
  options: FlowOptions,
  uses: { idempotency: boolean; cancelOn: boolean },
): FlowDefinition {
  const check = new Checker(functionId);
  const definition: FlowDefinition = {
    concurrency: check.concurrency(options.concurrency),
    throttle: check.throttle(options.throttle),
    rateLimit: check.rateLimit(options.rateLimit),
    debounce: check.debounce(options.debounce),
    priority: check.priority(options.priority),
    batching: check.batching(options.batchEvents),
    singleton: check.singleton(options.singleton),
  };
  if (definition.batching !== undefined) {
    const clashes = (
      [
        ["debounce", definition.debounce !== undefined],
        ["idempotency", uses.idempotency],
        ["rateLimit", definition.rateLimit !== undefined],
        ["singleton", definition.singleton !== undefined],
        ["cancelOn", uses.cancelOn],
      ] as const
    )
      .filter(([, used]) => used)
      .map(([name]) => name);
    if (clashes.length > 0) {
      throw check.error(
        "batchEvents",
        `cannot be combined with ${clashes.join(", ")}: a batched run has many ` +
          "events, and these options work on the one event of a run",
      );
    }
  }
  return definition;
}

class Checker {
  constructor(private readonly functionId: string) {}

  error(option: string, problem: string): ConfigError {
    return new ConfigError(`function '${this.functionId}': ${option} ${problem}`);
  }

  object(option: string, value: unknown, fields: readonly string[], required: readonly string[]): Record<string, unknown> {
    const shape = `an object with the keys ${fields.join(", ")}`;
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw this.error(option, `is ${shape}, not ${Array.isArray(value) ? "an array" : typeof value}`);
    }
    const unknown = Object.keys(value).filter((k) => !fields.includes(k)).sort();
    if (unknown.length > 0) {
      throw this.error(option, `has unknown key(s) ${unknown.map(quote).join(", ")}; it takes ${fields.join(", ")}`);
    }
    const missing = required.filter((k) => (value as Record<string, unknown>)[k] === undefined);
    if (missing.length > 0) throw this.error(option, `needs ${missing.join(", ")}`);
    return value as Record<string, unknown>;
  }

  count(what: string, value: unknown, high: number): number {
    if (typeof value !== "number" || !Number.isInteger(value)) {
      throw this.error(what, `must be an integer, not ${typeof value === "number" ? String(value) : typeof value}`);
    }
    if (value < 1 || value > high) {
      throw this.error(what, `must be between 1 and ${high.toLocaleString("en-US")}, not ${value}`);
    }
    return value;
  }

  period(what: string, value: unknown, lowMs: number, highMs: number): number {
    let ms: number;
    try {
      ms = toMilliseconds(value as Duration);
    } catch (error) {
      throw this.error(what, `is not a valid duration: ${(error as Error).message}`);
    }
    if (ms < lowMs || ms > highMs) {
      throw this.error(what, `must be between ${shortDuration(lowMs)} and ${shortDuration(highMs)}, not ${describe(value)}`);
    }
    return ms;
  }

  key(option: string, key: unknown): string {
    if (key === undefined || key === null) return "";
    if (typeof key !== "string") {
      throw this.error(`${option} key`, `is a CEL expression such as 'event.data.customer_id', not ${typeof key}`);
    }
    return key;
  }

  choice<T>(what: string, value: unknown, choices: Readonly<Record<string, T>>): T {
    const chosen = typeof value === "string" && Object.hasOwn(choices, value) ? choices[value] : undefined;
    if (chosen === undefined) {
      throw this.error(what, `is one of ${Object.keys(choices).map(quote).join(", ")}, not ${describe(value)}`);
    }
    return chosen;
  }

  concurrency(value: FlowOptions["concurrency"]): FunctionDefinition["concurrency"] {
    if (value === undefined) return [];
    const items: readonly unknown[] = Array.isArray(value) ? value : [value];
    if (items.length > MAX_CONCURRENCY_LIMITS) {
      throw this.error("concurrency", `has ${items.length} limits; the limit is ${MAX_CONCURRENCY_LIMITS}`);
    }
    return items.map((item) => {
      const option =
        typeof item === "number"
          ? { limit: item }
          : this.object("concurrency", item, ["limit", "key", "scope"], ["limit"]);
      const limit = this.count("concurrency limit", option.limit, MAX_CONCURRENCY);
      const key = this.key("concurrency", option.key);
      const scopeName = typeof option.scope === "string" ? option.scope : "fn";
      const scope = this.choice("concurrency scope", option.scope ?? "fn", SCOPES);
      if (scopeName !== "fn" && key === "") {
        throw this.error(
          "concurrency",
          `with scope '${scopeName}' needs a key: the key's value names the limit that functions share`,
        );
      }
      return { limit, key, scope };
    });
  }

  throttle(value: ThrottleOption | undefined): FunctionDefinition["throttle"] {
    if (value === undefined) return undefined;
    const option = this.object("throttle", value, ["limit", "period", "burst", "key"], ["limit", "period"]);
    return {
      limit: this.count("throttle limit", option.limit, MAX_RATE),
      burst: this.count("throttle burst", option.burst ?? 1, MAX_RATE),
      periodMs: this.period("throttle period", option.period, SECOND_MS, 7 * DAY_MS),
      key: this.key("throttle", option.key),
    };
  }

  rateLimit(value: RateLimitOption | undefined): FunctionDefinition["rateLimit"] {
    if (value === undefined) return undefined;
    const option = this.object("rateLimit", value, ["limit", "period", "key"], ["limit", "period"]);
    return {
      limit: this.count("rateLimit limit", option.limit, MAX_RATE),
      periodMs: this.period("rateLimit period", option.period, SECOND_MS, DAY_MS),
      key: this.key("rateLimit", option.key),
    };
  }

  debounce(value: DebounceOption | undefined): FunctionDefinition["debounce"] {
    if (value === undefined) return undefined;
    const option = this.object("debounce", value, ["period", "key", "timeout"], ["period"]);
    return {
      periodMs: this.period("debounce period", option.period, SECOND_MS, 7 * DAY_MS),
      timeoutMs: option.timeout === undefined ? 0 : this.period("debounce timeout", option.timeout, SECOND_MS, 7 * DAY_MS),
      key: this.key("debounce", option.key),
    };
  }

  priority(value: PriorityOption | undefined): FunctionDefinition["priority"] {
    if (value === undefined) return undefined;
    const option = this.object("priority", value, ["run"], ["run"]);
    if (typeof option.run !== "string" || option.run.trim() === "") {
      throw this.error(
        "priority",
        "is a CEL expression giving seconds, such as \"event.data.plan == 'enterprise' ? 120 : 0\"",
      );
    }
    return { run: option.run };
  }

  batching(value: BatchEventsOption | undefined): FunctionDefinition["batching"] {
    if (value === undefined) return undefined;
    const option = this.object("batchEvents", value, ["maxSize", "timeout", "key"], ["maxSize", "timeout"]);
    return {
      maxSize: this.count("batchEvents maxSize", option.maxSize, MAX_BATCH_SIZE),
      timeoutMs: this.period("batchEvents timeout", option.timeout, SECOND_MS, HOUR_MS),
      key: this.key("batchEvents", option.key),
    };
  }

  singleton(value: SingletonOption | undefined): FunctionDefinition["singleton"] {
    if (value === undefined) return undefined;
    const option = this.object("singleton", value, ["key", "mode"], []);
    return {
      key: this.key("singleton", option.key),
      mode: this.choice("singleton mode", option.mode ?? "skip", SINGLETON_MODES),
    };
  }
}

function describe(value: unknown): string {
  return typeof value === "string" ? quote(value) : String(value);
}

/** `7d`, `1h`, `1s` or `500ms`: the largest unit that divides the value. */
function shortDuration(ms: number): string {
  for (const [unit, size] of [
    ["d", DAY_MS],
    ["h", HOUR_MS],
    ["s", SECOND_MS],
  ] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
