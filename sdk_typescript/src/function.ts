/** A durable function: its id, triggers, options and handler. */

import { type Duration, quote, toMilliseconds } from "./durations.js";
import { ConfigError } from "./errors.js";
import type { Execution } from "./execution.js";
import { type FlowOptions, flowDefinition } from "./flow.js";
import { type Logger, silencedWhile, withFields } from "./logger.js";
import type { CronTick } from "./models.js";
import { Step, type Invocable, stepScope } from "./step.js";
import type { AnyData, EventFor, EventName, EventSchemas, Jsonify, TetherEvent } from "./types.js";
import {
  CronCatchUp,
  type CancelOn,
  type FunctionDefinition,
  type Trigger,
} from "./gen/tether/v1/common.js";

export const DEFAULT_RETRIES = 4;
export const MAX_RETRIES = 20;
export const MAX_FUNCTION_ID_LENGTH = 128;
const KEBAB = /^[a-z0-9]+(-[a-z0-9]+)*$/;

/** The event the control plane emits when a run fails for good. */
export const FUNCTION_FAILED = "tether/function.failed";

/** What missed cron ticks do: one run for the latest (default), none, or one per tick. */
export type CatchUp = "one" | "none" | "all";
const CATCH_UP: Readonly<Record<string, CronCatchUp>> = {
  one: CronCatchUp.CRON_CATCH_UP_ONE,
  none: CronCatchUp.CRON_CATCH_UP_NONE,
  all: CronCatchUp.CRON_CATCH_UP_ALL,
};

/** Start a run for each event with this name (a trailing `*` matches a prefix) for which `if` holds. */
export interface EventTriggerOption<TName extends string = string> {
  event: TName;
  /** A CEL expression over `event`, for example `"event.data.plan == 'pro'"`. */
  if?: string;
}

/** Start a run on a cron schedule, in time zone `tz` (IANA; default UTC). */
export interface CronTriggerOption {
  cron: string;
  tz?: string;
  catchUp?: CatchUp;
}

export type TriggerOption<TName extends string = string> = EventTriggerOption<TName> | CronTriggerOption;

/** Cancel a run when a matching event arrives. */
export interface CancelOnOption<TName extends string = string> {
  event: TName;
  /** A path such as `"data.order_id"` both events must have equal values at. */
  match?: string;
  /** A CEL expression over `event` (the run's) and `async` (the incoming one). */
  if?: string;
  /** Watch only this long after the run was created. */
  timeout?: Duration;
}

/** Cancel runs that wait too long to start, or take too long to finish. */
export interface TimeoutsOption {
  start?: Duration;
  finish?: Duration;
}

/** What a function's handler receives. */
export interface FunctionContext<TEvent = TetherEvent, TEvents extends EventSchemas = EventSchemas> {
  /** The event that started the run (for a cron run: name `""`, empty data). */
  readonly event: TEvent;
  /** Every event of the run: several for batched functions, none for a cron run. */
  readonly events: TEvent[];
  readonly step: Step<TEvents>;
  readonly runId: string;
  readonly functionId: string;
  /**
   * The attempt (0-based): of the step whose code is running, or of the
   * function body outside any step. Read it as `ctx.attempt` inside a step's
   * code; a copy destructured at the top is the body's.
   */
  readonly attempt: number;
  /** A logger that is silent while the run replays memoized steps. */
  readonly logger: Logger;
  /** The cron tick that started the run, for a cron run. */
  readonly cron: CronTick | undefined;
}

/** The data of `tether/function.failed`, which `onFailure` handlers receive. */
export interface FunctionFailedData {
  app_id: string;
  function_id: string;
  run_id: string;
  error: { name: string; message: string; stack: string };
  /** The failed run's event, or null for a cron run. */
  event: { id: string; name: string; data: AnyData; user: AnyData; ts: number } | null;
}

export type Handler<TEvent, TEvents extends EventSchemas, TOutput> = (
  context: FunctionContext<TEvent, TEvents>,
) => TOutput | Promise<TOutput>;

/** The options of `createFunction`. */
export interface FunctionOptions<TEvents extends EventSchemas, TTrigger extends string> extends FlowOptions {
  /** Unique in the app, kebab-case, stable across deployments. */
  id: string;
  /** A display name; defaults to the id. */
  name?: string;
  /** Start a run for each event with this name. */
  event?: TTrigger;
  /** With `event`: a CEL expression over `event` that must hold. */
  if?: string;
  /** Start runs on this cron schedule, for example `"0 9 * * *"`. */
  cron?: string;
  /** With `cron`: its IANA time zone (default UTC). */
  tz?: string;
  /** With `cron`: what missed ticks do. */
  catchUp?: CatchUp;
  /** Several triggers (instead of `event` / `cron`). None at all: the function only runs when invoked. */
  triggers?: readonly TriggerOption<TTrigger>[];
  /** Retries of a failed step (and of the body), 0 to 20; default 4. */
  retries?: number;
  /** A CEL expression over `event`: one run per key per 24 hours. */
  idempotency?: string;
  cancelOn?: readonly CancelOnOption<EventName<TEvents>>[];
  timeouts?: TimeoutsOption;
  /** Keep this function's finished runs this long (at least a minute) instead of the environment's retention. */
  retention?: Duration;
  /** Runs when a run of this function fails for good, with its `tether/function.failed` event. */
  onFailure?: Handler<TetherEvent<typeof FUNCTION_FAILED, FunctionFailedData>, TEvents, unknown>;
}

/** The event type a function's handler receives for its triggers. */
export type TriggeredEvent<TEvents extends EventSchemas, TTrigger extends string> = [TTrigger] extends [never]
  ? TetherEvent
  : EventFor<TEvents, TTrigger>;

/** What `createFunction` returns: pass it to `step.invoke`, or serve it. */
export class TetherFunction<TOutput = unknown> implements Invocable<TOutput> {
  declare readonly __output?: TOutput;

  constructor(
    /** The app the function belongs to. */
    readonly appId: string,
    /** The definition the worker registers. */
    readonly definition: FunctionDefinition,
    readonly handler: Handler<TetherEvent, EventSchemas, unknown>,
    readonly logger: Logger,
  ) {}

  get id(): string {
    return this.definition.id;
  }

  get name(): string {
    return this.definition.name;
  }

  get retries(): number {
    return this.definition.retries ?? DEFAULT_RETRIES;
  }

  /** Runs the handler for one execution. */
  execute(execution: Execution): Promise<unknown> {
    return Promise.resolve(this.handler(createContext(execution, this.logger)));
  }
}

/** The context a handler gets for one execution. */
export function createContext(execution: Execution, base: Logger): FunctionContext {
  const events = execution.events;
  const fields: Record<string, string> = {
    runId: execution.runId,
    functionId: execution.functionId,
    executionId: execution.executionId,
  };
  if (execution.trace !== null) fields.traceId = execution.trace.traceId;
  return {
    event: events[0] ?? { name: "", data: {}, id: "", ts: 0 },
    events,
    step: new Step(execution),
    runId: execution.runId,
    functionId: execution.functionId,
    get attempt() {
      return stepScope.getStore()?.attempt ?? execution.attempt;
    },
    logger: silencedWhile(stepLogger(base, fields), () => execution.replaying),
    cron: execution.cron,
  };
}

/** A logger whose lines carry `fields`, and `stepId` while a step's code runs. */
function stepLogger(base: Logger, fields: Record<string, string>): Logger {
  const run = withFields(base, fields);
  const perStep = new Map<string, Logger>();
  const current = (): Logger => {
    const stepId = stepScope.getStore()?.stepId;
    if (stepId === undefined) return run;
    let logger = perStep.get(stepId);
    if (logger === undefined) {
      logger = withFields(base, { ...fields, stepId });
      perStep.set(stepId, logger);
    }
    return logger;
  };
  return {
    debug: (...args) => { current().debug(...args); },
    info: (...args) => { current().info(...args); },
    warn: (...args) => { current().warn(...args); },
    error: (...args) => { current().error(...args); },
  };
}

/** Checks `options` and builds the definition the control plane stores. */
export function functionDefinition(
  appId: string,
  options: FunctionOptions<EventSchemas, string>,
): FunctionDefinition {
  const given: unknown = options;
  if (typeof given !== "object" || given === null) {
    throw new ConfigError("createFunction needs options, like { id: 'send-welcome-email', event: 'app/user.signup' }");
  }
  const id = options.id;
  checkFunctionId(id);
  const retries = options.retries ?? DEFAULT_RETRIES;
  if (typeof retries !== "number" || !Number.isInteger(retries)) {
    throw new ConfigError(`function '${id}': retries must be an integer`);
  }
  if (retries < 0 || retries > MAX_RETRIES) {
    throw new ConfigError(`function '${id}': retries must be between 0 and ${MAX_RETRIES}, not ${retries}`);
  }
  const idempotency = options.idempotency ?? "";
  if (typeof idempotency !== "string" || (options.idempotency !== undefined && idempotency === "")) {
    throw new ConfigError(`function '${id}': idempotency is a CEL expression such as 'event.data.order_id'`);
  }
  const cancelOn = cancelOnList(id, options.cancelOn);
  const [startMs, finishMs] = timeoutsOf(id, options.timeouts);
  return {
    id,
    name: options.name === undefined || options.name === "" ? id : options.name,
    triggers: triggersOf(id, options),
    retries,
    cancelOn,
    idempotency,
    timeouts: { startMs, finishMs },
    ...flowDefinition(id, options, { idempotency: idempotency !== "", cancelOn: cancelOn.length > 0 }),
    retentionMs: retentionOf(id, options.retention),
  };
}

/** The definition of `<id>-failure`, triggered by the failed runs of `definition`. */
export function failureDefinition(appId: string, definition: FunctionDefinition): FunctionDefinition {
  return {
    id: `${definition.id}-failure`,
    name: `${definition.name} (on failure)`,
    triggers: [
      {
        kind: {
          $case: "event",
          value: {
            name: FUNCTION_FAILED,
            ifExpression:
              `event.data.function_id == ${JSON.stringify(definition.id)} ` +
              `&& event.data.app_id == ${JSON.stringify(appId)}`,
          },
        },
      },
    ],
    retries: definition.retries,
    cancelOn: [],
    idempotency: "",
    timeouts: { startMs: 0, finishMs: 0 },
    concurrency: [],
    retentionMs: 0,
  };
}

export function checkFunctionId(id: unknown): asserts id is string {
  if (typeof id !== "string" || id === "") {
    throw new ConfigError("a function needs an id, like { id: 'send-welcome-email' }");
  }
  if (id.length > MAX_FUNCTION_ID_LENGTH) {
    throw new ConfigError(
      `function id ${quote(id.slice(0, 40))}... is ${id.length} characters; the limit is ${MAX_FUNCTION_ID_LENGTH}`,
    );
  }
  if (!KEBAB.test(id)) {
    const suggestion = id.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "");
    throw new ConfigError(
      `function id ${quote(id)} is not kebab-case: use lowercase letters and ` +
        `digits joined by '-', like ${quote(suggestion === "" ? "my-function" : suggestion)}`,
    );
  }
}

function triggersOf(id: string, options: FunctionOptions<EventSchemas, string>): Trigger[] {
  const single = options.event !== undefined || options.cron !== undefined;
  if (options.triggers !== undefined && single) {
    throw new ConfigError(`function '${id}': give either event / cron or triggers, not both`);
  }
  if (options.if !== undefined && options.event === undefined) {
    throw new ConfigError(`function '${id}': 'if' goes with 'event' (or use triggers: [{ event, if }])`);
  }
  if ((options.tz !== undefined || options.catchUp !== undefined) && options.cron === undefined) {
    throw new ConfigError(`function '${id}': 'tz' and 'catchUp' go with 'cron'`);
  }
  let items: readonly unknown[];
  if (options.triggers !== undefined) {
    if (!Array.isArray(options.triggers)) {
      throw new ConfigError(`function '${id}': triggers is a list like [{ event: 'app/x' }, { cron: '0 9 * * *' }]`);
    }
    items = options.triggers;
  } else {
    const list: TriggerOption[] = [];
    if (options.event !== undefined) list.push({ event: options.event, ...(options.if === undefined ? {} : { if: options.if }) });
    if (options.cron !== undefined) {
      list.push({
        cron: options.cron,
        ...(options.tz === undefined ? {} : { tz: options.tz }),
        ...(options.catchUp === undefined ? {} : { catchUp: options.catchUp }),
      });
    }
    items = list;
  }
  return items.map((item): Trigger => {
    if (typeof item !== "object" || item === null) {
      throw new ConfigError(`function '${id}': a trigger is { event, if } or { cron, tz }, not ${typeof item}`);
    }
    const trigger = item as Partial<EventTriggerOption & CronTriggerOption>;
    if (trigger.cron !== undefined && trigger.event !== undefined) {
      throw new ConfigError(`function '${id}': a trigger is { event, if } or { cron, tz, catchUp }, not both`);
    }
    if (trigger.cron !== undefined) {
      if (typeof trigger.cron !== "string" || trigger.cron.trim() === "") {
        throw new ConfigError(`function '${id}': a cron trigger needs a schedule such as '0 9 * * *'`);
      }
      const catchUp = trigger.catchUp ?? "one";
      const mode = Object.hasOwn(CATCH_UP, catchUp) ? CATCH_UP[catchUp] : undefined;
      if (mode === undefined) {
        throw new ConfigError(
          `function '${id}': cron ${quote(trigger.cron)}: catchUp is one of one, none, all, not ${quote(catchUp)}`,
        );
      }
      return { kind: { $case: "cron", value: { schedule: trigger.cron, timezone: trigger.tz ?? "", catchUp: mode } } };
    }
    const name: unknown = trigger.event;
    if (typeof name !== "string" || name === "" || /\s/.test(name)) {
      throw new ConfigError(
        `function '${id}': invalid event name ${quote(String(name))} (non-empty, no whitespace, like 'app/user.signup')`,
      );
    }
    return { kind: { $case: "event", value: { name, ifExpression: trigger.if ?? "" } } };
  });
}

function cancelOnList(id: string, items: unknown): CancelOn[] {
  if (items === undefined) return [];
  const list: readonly unknown[] = Array.isArray(items) ? items : [items];
  return list.map((item) => {
    const entry = item as Partial<CancelOnOption>;
    const unknown =
      typeof item === "object" && item !== null
        ? Object.keys(item).filter((k) => !["event", "match", "if", "timeout"].includes(k)).sort()
        : [];
    if (typeof item !== "object" || item === null || unknown.length > 0 || entry.event === undefined) {
      throw new ConfigError(
        `function '${id}': cancelOn entries look like ` +
          "{ event: 'app/order.cancelled', match: 'data.order_id' }" +
          (unknown.length > 0 ? `; unknown key(s) ${unknown.map(quote).join(", ")}` : ""),
      );
    }
    if (typeof entry.event !== "string" || entry.event === "") {
      throw new ConfigError(`function '${id}': each cancelOn entry needs an event name`);
    }
    let timeoutMs = 0;
    if (entry.timeout !== undefined) {
      try {
        timeoutMs = toMilliseconds(entry.timeout);
      } catch (error) {
        throw new ConfigError(`function '${id}': cancelOn timeout: ${(error as Error).message}`);
      }
    }
    return { event: entry.event, match: entry.match ?? "", ifExpression: entry.if ?? "", timeoutMs };
  });
}

function retentionOf(id: string, retention: unknown): number {
  if (retention === undefined) return 0;
  let ms: number;
  try {
    ms = toMilliseconds(retention as Duration);
  } catch (error) {
    throw new ConfigError(`function '${id}': retention: ${(error as Error).message}`);
  }
  if (ms < 60_000) {
    throw new ConfigError(`function '${id}': retention must be at least a minute; got ${JSON.stringify(retention)}`);
  }
  return ms;
}

function timeoutsOf(id: string, timeouts: unknown): [number, number] {
  if (timeouts === undefined) return [0, 0];
  if (
    typeof timeouts !== "object" ||
    timeouts === null ||
    Object.keys(timeouts).some((k) => k !== "start" && k !== "finish")
  ) {
    throw new ConfigError(`function '${id}': timeouts look like { start: '10m', finish: '1h' }`);
  }
  const { start, finish } = timeouts as TimeoutsOption;
  try {
    return [start === undefined ? 0 : toMilliseconds(start), finish === undefined ? 0 : toMilliseconds(finish)];
  } catch (error) {
    throw new ConfigError(`function '${id}': timeouts: ${(error as Error).message}`);
  }
}

/** The output type of a function's handler, as `step.invoke` returns it. */
export type FunctionOutput<TOutput> = Jsonify<Awaited<TOutput>>;
