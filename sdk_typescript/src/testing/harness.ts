/** Runs one function in-process with mocked step results; no control plane. */

import { eventFromWire, eventToWire } from "../convert.js";
import { NonRetriableError, StepError, errorMessage, errorName } from "../errors.js";
import { Execution, errorInfo } from "../execution.js";
import type { TetherFunction } from "../function.js";
import { decodeJson, encodeJson } from "../json.js";
import { defaultLogger } from "../logger.js";
import { hashStepId } from "../stepIds.js";
import type { EventPayload, TetherEvent } from "../types.js";
import { type Event as WireEvent, StepKind } from "../gen/tether/v1/common.js";
import type { MemoizedStep, PlannedWait } from "../gen/tether/v1/worker_service.js";

/** A step the function reached, in order. */
export interface StepCall {
  /** The step id as written, with its `:n` suffix when repeated. */
  id: string;
  kind: "run" | "sleep" | "wait_for_event" | "invoke" | "send_event";
  /** True when the result came from `steps` instead of running the code. */
  mocked: boolean;
  output: unknown;
  error: StepError | undefined;
  /** How many times its code ran. */
  attempts: number;
  /** For sleeps: how long the function asked to sleep, in milliseconds. */
  sleptMs: number | undefined;
}

/** What `runFunction` returns. */
export interface HarnessResult {
  output: unknown;
  /** What the function threw, if it did. */
  error: unknown;
  steps: StepCall[];
  /** Events the function sent with `step.sendEvent`. */
  sentEvents: TetherEvent[];
  /** The call of the step with this id (`id:1` for the second one); throws if never reached. */
  step(id: string): StepCall;
}

/** Options of `runFunction`. */
export interface RunFunctionOptions {
  /** The run's event (default `{ name: "test/event" }`). */
  event?: EventPayload;
  /** Several events (a batched function). */
  events?: readonly EventPayload[];
  /** Step ids (as written) mapped to mocked results; an `Error` makes that step fail for good. */
  steps?: Readonly<Record<string, unknown>>;
  /** The run's attempt (0-based). */
  attempt?: number;
}

function newCall(id: string, kind: StepCall["kind"], fields: Partial<StepCall> = {}): StepCall {
  return { id, kind, mocked: false, output: undefined, error: undefined, attempts: 0, sleptMs: undefined, ...fields };
}

class HarnessExecution extends Execution {
  readonly calls: StepCall[] = [];
  readonly sent: TetherEvent[] = [];
  readonly #names = new Map<string, string>();
  readonly #open = new Map<string, StepCall>();

  // Nothing replays in the harness: mocks stand for steps this one pass runs, so ctx.logger always speaks.
  override get replaying(): boolean {
    return false;
  }

  override allocate(stepId: string): [name: string, hashed: string] {
    const [name, hashed] = super.allocate(stepId);
    this.#names.set(hashed, name);
    return [name, hashed];
  }

  // Mocks have no recorded order: hand them out as asked.
  override memoized(hashed: string): MemoizedStep | null {
    const memo = this.memo.get(hashed);
    if (memo === undefined) return null;
    const call = newCall(this.#names.get(hashed) ?? hashed, "run", { mocked: true });
    if (memo.result?.$case === "error") {
      call.error = new StepError(call.id, memo.result.value.name, memo.result.value.message);
    } else {
      call.output = decodeJson(memo.result?.value);
    }
    this.calls.push(call);
    return memo;
  }

  #callFor(name: string, kind: StepKind): StepCall {
    let call = this.#open.get(name);
    if (call === undefined) {
      call = newCall(name, kind === StepKind.STEP_KIND_SEND_EVENT ? "send_event" : "run");
      this.#open.set(name, call);
      this.calls.push(call);
    }
    return call;
  }

  override stepCompleted(name: string, _hashed: string, kind: StepKind, output: Buffer): void {
    const call = this.#callFor(name, kind);
    call.attempts += 1;
    call.output = decodeJson(output);
  }

  override stepFailed(
    name: string,
    _hashed: string,
    kind: StepKind,
    error: unknown,
    _startedMs: number,
    attempt: number,
  ): Promise<void> {
    const call = this.#callFor(name, kind);
    call.attempts += 1;
    // The step runs again at once: the harness does not wait out backoff.
    if (!(error instanceof NonRetriableError) && attempt < this.retries) return Promise.resolve();
    call.error = new StepError(name, errorName(error), errorMessage(error));
    throw call.error;
  }

  override async plan(wait: PlannedWait, target?: unknown): Promise<unknown> {
    const kind = wait.kind;
    if (kind?.$case === "sleep") {
      this.calls.push(newCall(wait.name, "sleep", { sleptMs: kind.value.untilMs - wait.startedAtMs }));
      return null;
    }
    if (kind?.$case === "waitForEvent") {
      // No event arrives in the harness: the wait times out (mock it to return an event).
      this.calls.push(newCall(wait.name, "wait_for_event"));
      return null;
    }
    const call = newCall(wait.name, "invoke");
    this.calls.push(call);
    if (!isFunction(target) || kind?.$case !== "invoke") {
      call.error = new StepError(
        wait.name,
        "InvokeError",
        "the harness runs only invoked functions passed as function objects; " +
          `mock step '${wait.name}' instead`,
      );
      throw call.error;
    }
    const data = (decodeJson(kind.value.data) as Record<string, unknown> | null) ?? {};
    const child = await runFunction(target, { event: { name: "tether/function.invoked", data } });
    if (child.error !== undefined) {
      call.error = new StepError(wait.name, errorName(child.error), errorMessage(child.error));
      throw call.error;
    }
    // What a worker would hand back: the JSON of the child's output.
    call.output = decodeJson(encodeJson(child.output));
    return call.output;
  }

  override sendEvents(events: WireEvent[]): Promise<string[]> {
    this.sent.push(...events.map(eventFromWire));
    return Promise.resolve(events.map((e) => e.id));
  }
}

function isFunction(value: unknown): value is TetherFunction {
  return typeof value === "object" && value !== null && "definition" in value && "execute" in value;
}

/**
 * Runs `fn` once, start to end, in this process.
 *
 * `steps` maps step ids to mocked results (an `Error` makes that step fail
 * for good, throwing StepError in the function). Steps without a mock run for
 * real; a failing one is retried at once up to the function's retries. Sleeps
 * return at once and are recorded; waits for events time out (return `null`)
 * unless mocked. Nothing talks to a control plane.
 */
export async function runFunction(fn: TetherFunction, options: RunFunctionOptions = {}): Promise<HarnessResult> {
  const trigger = options.events ?? [options.event ?? { name: "test/event", data: {} }];
  const steps = Object.entries(options.steps ?? {}).map(([name, value]): MemoizedStep => {
    if (value instanceof Error) return { stepId: hashStepId(name), result: { $case: "error", value: errorInfo(value) } };
    let output: Buffer;
    try {
      output = encodeJson(value);
    } catch (problem) {
      throw new TypeError(`the mock for step '${name}' is not JSON: ${errorMessage(problem)}`, { cause: problem });
    }
    return { stepId: hashStepId(name), result: { $case: "output", value: output } };
  });
  const execution = new HarnessExecution(
    fn,
    {
      executionId: "harness",
      runId: "harness-run",
      functionId: fn.id,
      attempt: options.attempt ?? 0,
      events: trigger.map((event, index) => eventToWire(event, index)),
      steps,
      stepAttempts: {},
      leaseDeadlineMs: 0,
      serverTimeMs: Date.now(),
      stepNotBeforeMs: {},
    },
    { log: defaultLogger() },
  );
  const result = (output: unknown, error: unknown): HarnessResult => ({
    output,
    error,
    steps: execution.calls,
    sentEvents: execution.sent,
    step(id: string): StepCall {
      const call = execution.calls.find((c) => c.id === id);
      if (call === undefined) {
        throw new RangeError(
          `the function never reached step '${id}'; it reached ${execution.calls.map((c) => `'${c.id}'`).join(", ")}`,
        );
      }
      return call;
    },
  });
  try {
    return result(await fn.execute(execution), undefined);
  } catch (error) {
    return result(undefined, error);
  }
}
