/**
 * Step tools: `step.run`, `sleep`, `sleepUntil`, `waitForEvent`, `invoke` and
 * `sendEvent`. Every step has an id, unique in the function and stable across
 * deployments: it is how results are memoized.
 */

import { AsyncLocalStorage } from "node:async_hooks";

import { eventFromJson, eventToWire } from "./convert.js";
import { type Duration, describeType, quote, toMilliseconds } from "./durations.js";
import { NonRetriableError } from "./errors.js";
import type { Execution } from "./execution.js";
import { NotSerializableError, decodeJson, encodeJson } from "./json.js";
import { inStepSpan } from "./telemetry.js";
import type { EventFor, EventName, EventSchemas, Jsonify, PayloadFor } from "./types.js";
import { StepKind } from "./gen/tether/v1/common.js";
import { ParentClose, type PlannedWait } from "./gen/tether/v1/worker_service.js";

/** The step whose code is running: its attempt (0-based) and id, for `attempt` and the logger. */
export interface StepScope {
  readonly attempt: number;
  readonly stepId: string;
}

export const stepScope = new AsyncLocalStorage<StepScope>();

/** A function to invoke: one of this app's (by reference or id) or `"app-id/function-id"`. */
export interface Invocable<TOutput = unknown> {
  readonly id: string;
  /** The function's app; empty or absent: the invoking run's app. */
  readonly appId?: string;
  /** Never set: carries the function's output type for `step.invoke`. */
  readonly __output?: TOutput;
}

/** Options of `step.waitForEvent`. */
export interface WaitForEventOptions<TName extends string> {
  /** The event name to wait for (exact, no wildcard). */
  event: TName;
  /** How long to wait; then the step returns `null`. */
  timeout: Duration;
  /** A path such as `"data.user_id"`: the incoming event's value there must equal this run's event's. */
  match?: string;
  /** A CEL expression over `event` (this run's) and `async` (the incoming one). */
  if?: string;
}

/** Options of `step.invoke`. */
export interface InvokeOptions<TOutput> {
  /** The function to run as a child run. */
  function: Invocable<TOutput> | string;
  /** The child run's event data. */
  data?: Record<string, unknown>;
  /** Give up waiting after this long (the step then throws StepError). */
  timeout?: Duration;
  /**
   * When this run is cancelled (or ends without the child), or `timeout`
   * passes: cancel the child too (`"cancel"`, the default) or let it run on
   * by itself (`"abandon"`).
   */
  parentClose?: "cancel" | "abandon";
}

// The default goes out unset (UNSPECIFIED means cancel): the plan's bytes stay
// what they were before the field existed.
const PARENT_CLOSE: Record<string, ParentClose | undefined> = {
  cancel: ParentClose.PARENT_CLOSE_UNSPECIFIED,
  abandon: ParentClose.PARENT_CLOSE_ABANDON,
};

type Prepared = [fn: (...args: never[]) => unknown, args: unknown[]];

/** The durable building blocks of a function (`step` in the handler's context). */
export class Step<TEvents extends EventSchemas = EventSchemas> {
  readonly #x: Execution;

  constructor(execution: Execution) {
    this.#x = execution;
  }

  /**
   * Runs `fn(...args)` once for the whole run and returns its result.
   *
   * The result is memoized: when the function runs again (after a sleep, a
   * retry, a crash) the stored result is returned without calling `fn`. It must
   * be JSON; what is returned is its JSON round trip, the value every replay
   * sees. If `fn` throws, the step is retried with backoff; once retries are
   * spent, `StepError` is thrown here.
   */
  async run<TArgs extends unknown[], TResult>(
    id: string,
    fn: (...args: TArgs) => TResult,
    ...args: TArgs
  ): Promise<Jsonify<Awaited<TResult>>> {
    return (await this.#step(id, StepKind.STEP_KIND_RUN, () => [fn, args])) as Jsonify<Awaited<TResult>>;
  }

  /**
   * Sends events from the run, exactly once even if the function is retried:
   * each event without an id gets one derived from the run and the step, so a
   * resend is recognised as a duplicate. Returns the event ids.
   */
  async sendEvent(
    id: string,
    events: PayloadFor<TEvents> | readonly PayloadFor<TEvents>[],
  ): Promise<{ ids: string[] }> {
    const items: readonly PayloadFor<TEvents>[] = Array.isArray(events)
      ? (events as readonly PayloadFor<TEvents>[])
      : [events as PayloadFor<TEvents>];
    if (items.length === 0) throw new RangeError(`sendEvent ${quote(id)}: no events to send`);
    const runId = this.#x.runId;
    const ids = await this.#step(id, StepKind.STEP_KIND_SEND_EVENT, (_name, hashed) => {
      const messages = items.map((item, index) => {
        const message = eventToWire(item, index);
        if (message.id === "") message.id = `${runId}-${hashed.slice(0, 16)}-${index}`;
        return message;
      });
      return [this.#x.sendEvents.bind(this.#x), [messages]];
    });
    return { ids: ids as string[] };
  }

  async #step(
    id: string,
    kind: StepKind,
    prepare: (name: string, hashed: string) => Prepared,
  ): Promise<unknown> {
    const x = this.#x;
    const [name, hashed] = x.allocate(id);
    let memo = x.memoized(hashed);
    if (memo instanceof Promise) memo = await memo;
    if (memo !== null) return x.memoizedResult(name, memo);
    x.noteNewStep(name);
    if (x.stopped) await x.park();
    let attempt = x.stepAttempts.get(hashed) ?? 0;
    // A retry that is not due yet: wait it out like a sleep.
    if ((x.stepNotBefore.get(hashed) ?? 0) > x.now()) await x.park();
    if (x.stepCount > x.limits.maxStepsPerRun) {
      await x.stepFailed(
        name,
        hashed,
        kind,
        new NonRetriableError(
          `step '${name}' would be step ${x.stepCount} of the run; ` +
            `the limit is ${x.limits.maxStepsPerRun} steps per run`,
        ),
        x.now(),
        attempt,
      );
    }
    const [fn, args] = prepare(name, hashed);
    let result: unknown;
    let started: number;
    for (;;) {
      started = x.now();
      let failure: { error: unknown } | undefined;
      x.beginStep();
      try {
        result = await stepScope.run({ attempt, stepId: name }, () =>
          inStepSpan(
            { trace: x.trace, runId: x.runId, functionId: x.functionId, name, hashed, attempt },
            () => (fn as (...args: unknown[]) => unknown)(...args),
          ),
        );
      } catch (error) {
        failure = { error };
      } finally {
        x.endStep();
      }
      if (failure === undefined) break;
      // In a worker this never returns; the harness returns to retry.
      await x.stepFailed(name, hashed, kind, failure.error, started, attempt);
      attempt += 1;
    }
    const output = await this.#encode(name, hashed, kind, result, started, attempt);
    x.stateBytes += output.length;
    x.stepCompleted(name, hashed, kind, output, started);
    // The run was cancelled while this step ran: its result is recorded, nothing after it runs.
    if (x.cancelled) await x.park();
    return decodeJson(output);
  }

  async #encode(
    name: string,
    hashed: string,
    kind: StepKind,
    result: unknown,
    started: number,
    attempt: number,
  ): Promise<Buffer> {
    const x = this.#x;
    let output: Buffer;
    try {
      output = encodeJson(result);
    } catch (problem) {
      if (!(problem instanceof NotSerializableError)) throw problem;
      await x.stepFailed(
        name,
        hashed,
        kind,
        new NonRetriableError(
          `step '${name}' returned a value that is not JSON-serializable: ${problem.message} ` +
            "(step results must be objects, arrays, strings, numbers, booleans or null)",
        ),
        started,
        attempt,
      );
      throw new Error("unreachable: a failed step never returns", { cause: problem });
    }
    let tooBig = "";
    if (output.length > x.limits.maxStepOutputBytes) {
      tooBig =
        `step '${name}' output is ${output.length} bytes; the limit is ` +
        `${x.limits.maxStepOutputBytes} bytes per step`;
    } else if (x.stateBytes + output.length > x.limits.maxRunStateBytes) {
      tooBig =
        `step '${name}' would bring the run's state to ${x.stateBytes + output.length} ` +
        `bytes; the limit is ${x.limits.maxRunStateBytes} bytes per run`;
    }
    if (tooBig !== "") {
      await x.stepFailed(name, hashed, kind, new NonRetriableError(tooBig), started, attempt);
      throw new Error("unreachable: a failed step never returns");
    }
    return output;
  }

  // -- steps that suspend the run ---------------------------------------------------

  /** Pauses the run for `duration` (`"1h30m"`, or milliseconds). No worker is busy meanwhile. */
  async sleep(id: string, duration: Duration): Promise<void> {
    const ms = toMilliseconds(duration);
    await this.#suspend(id, (now) => ({ $case: "sleep", value: { untilMs: now + ms } }));
  }

  /** Pauses the run until `until` (a `Date`, or an ISO 8601 string). */
  async sleepUntil(id: string, until: Date | string): Promise<void> {
    const at = typeof until === "string" ? new Date(until) : until;
    if (!(at instanceof Date) || Number.isNaN(at.getTime())) {
      throw new TypeError(`sleepUntil ${quote(id)} needs a Date or an ISO 8601 time, not ${String(until)}`);
    }
    const untilMs = at.getTime();
    await this.#suspend(id, () => ({ $case: "sleep", value: { untilMs } }));
  }

  /**
   * Pauses until an event named `event` arrives, and returns it; returns
   * `null` once `timeout` passes. Events received from the moment the run
   * reaches this step count, even if they arrive before it is suspended.
   */
  async waitForEvent<TName extends EventName<TEvents>>(
    id: string,
    options: WaitForEventOptions<TName>,
  ): Promise<EventFor<TEvents, TName> | null> {
    const event: unknown = options.event;
    if (typeof event !== "string" || event === "") {
      throw new TypeError(`waitForEvent ${quote(id)}: give the event name to wait for`);
    }
    const timeoutMs = toMilliseconds(options.timeout);
    const value = await this.#suspend(id, (now) => ({
      $case: "waitForEvent",
      value: {
        event,
        match: options.match ?? "",
        ifExpression: options.if ?? "",
        timeoutUntilMs: now + timeoutMs,
      },
    }));
    return eventFromJson(value) as EventFor<TEvents, TName> | null;
  }

  /**
   * Runs another function as a child run with `data` as its event data, and
   * returns its output. If the child fails, is cancelled or does not finish
   * within `timeout`, StepError is thrown here (the step is not retried: the
   * child retried already).
   */
  async invoke<TOutput>(id: string, options: InvokeOptions<TOutput>): Promise<TOutput> {
    const target = options.function;
    let appId: string;
    let functionId: string;
    if (typeof target === "string" && target !== "") {
      const slash = target.lastIndexOf("/");
      appId = slash < 0 ? "" : target.slice(0, slash);
      functionId = target.slice(slash + 1);
    } else if (typeof target === "object" && typeof target.id === "string") {
      appId = target.appId ?? "";
      functionId = target.id;
    } else {
      throw new TypeError(`invoke ${quote(id)}: function is a function of this app or an id, not ${describeType(target)}`);
    }
    let data: Buffer;
    try {
      data = encodeJson({ ...(options.data ?? {}) });
    } catch (problem) {
      if (problem instanceof NotSerializableError) {
        throw new TypeError(`invoke ${quote(id)}: data is not JSON-serializable: ${problem.message}`, {
          cause: problem,
        });
      }
      throw problem;
    }
    const timeoutMs = options.timeout === undefined ? undefined : toMilliseconds(options.timeout);
    const parentClose = PARENT_CLOSE[options.parentClose ?? "cancel"];
    if (parentClose === undefined) {
      throw new TypeError(
        `invoke ${quote(id)}: parentClose is "cancel" or "abandon", not ${describeType(options.parentClose)}`,
      );
    }
    return (await this.#suspend(
      id,
      (now) => ({
        $case: "invoke",
        value: {
          appId,
          functionId,
          data,
          timeoutUntilMs: timeoutMs === undefined ? 0 : now + timeoutMs,
          parentClose,
        },
      }),
      typeof target === "string" ? undefined : target,
    )) as TOutput;
  }

  async #suspend(id: string, plan: (now: number) => PlannedWait["kind"], target?: unknown): Promise<unknown> {
    const x = this.#x;
    const [name, hashed] = x.allocate(id);
    let memo = x.memoized(hashed);
    if (memo instanceof Promise) memo = await memo;
    if (memo !== null) return x.memoizedResult(name, memo);
    x.noteNewStep(name);
    if (x.stopped) await x.park();
    const now = x.now();
    // In a worker this never returns: the run resumes in a later execution.
    return x.plan({ stepId: hashed, name, kind: plan(now), startedAtMs: now }, target);
  }
}
