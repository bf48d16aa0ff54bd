/**
 * One execution of a run on this worker.
 *
 * The function runs from the start. Memoized steps return their stored result
 * at once; a new `step.run` executes now and its result is streamed back while
 * the function carries on (checkpointing). When the function cannot go on (it
 * sleeps, or a step failed and must be retried later) the execution reports
 * what it waits for and abandons the function's promise; the control plane
 * resumes the run later with more memoized state.
 *
 * The rules are those of docs/protocol.md, section 5, and of the Python SDK's
 * `_execution.py`, which the conformance suite holds both SDKs to.
 */

import { setImmediate as nextTurn } from "node:timers/promises";

import { cronFromWire, eventFromWire } from "./convert.js";
import { NonRetriableError, RetryAfterError, StepError, errorMessage, errorName } from "./errors.js";
import { NotSerializableError, decodeJson, encodeJson } from "./json.js";
import type { Logger } from "./logger.js";
import type { CronTick } from "./models.js";
import { StepIds, hashStepId } from "./stepIds.js";
import { type TraceIds, parseTraceparent } from "./telemetry.js";
import type { TetherEvent } from "./types.js";
import type { ErrorInfo, Event as WireEvent, StepKind } from "./gen/tether/v1/common.js";
import type { Execute, MemoizedStep, Outcome, PlannedWait } from "./gen/tether/v1/worker_service.js";

/** How many event-loop turns an execution waits, once every branch looks
 * blocked, for parallel branches to reach their next step before it suspends
 * (the same number as the Python SDK). */
const SETTLE_TURNS = 4;

/** What the control plane accepts (from Welcome); checked before sending. */
export interface Limits {
  maxStepOutputBytes: number;
  maxRunStateBytes: number;
  maxStepsPerRun: number;
  maxFrameBytes: number;
}

export const DEFAULT_LIMITS: Readonly<Limits> = {
  maxStepOutputBytes: 4 * 1024 * 1024,
  maxRunStateBytes: 32 * 1024 * 1024,
  maxStepsPerRun: 1000,
  maxFrameBytes: 64 * 1024 * 1024,
};

/** What an execution needs to know of the function it runs. */
export interface ExecutableFunction {
  readonly id: string;
  readonly retries: number;
  /** Runs the function's code for this execution. */
  execute(execution: Execution): Promise<unknown>;
}

/** The kind of outcome an execution reports, without seq and ids. */
export type OutcomeKind = NonNullable<Outcome["kind"]>;

export interface ExecutionOptions {
  /** Where outcomes go (the worker numbers and batches them). */
  emit?: (outcome: Outcome) => void;
  limits?: Limits;
  /** Sends the events of `step.sendEvent`; returns their ids. */
  send?: (events: WireEvent[]) => Promise<string[]>;
  /** The SDK's own log (failed steps, non-determinism). */
  log?: Logger;
}

export function errorInfo(error: unknown): ErrorInfo {
  return {
    name: errorName(error),
    message: errorMessage(error),
    stack: error instanceof Error ? (error.stack ?? "") : "",
  };
}

/** A promise that never settles: a step call that cannot return in this execution. */
const PARKED = new Promise<never>(() => undefined);

/** Something that can be awaited until it is set, then cleared. */
class Signal {
  #set = false;
  #wake: (() => void) | undefined;

  set(): void {
    this.#set = true;
    this.#wake?.();
    this.#wake = undefined;
  }

  async wait(): Promise<void> {
    if (this.#set) return;
    await new Promise<void>((resolve) => {
      this.#wake = resolve;
    });
  }

  clear(): void {
    this.#set = false;
  }
}

/** The state of one Execute: memoized steps, new steps, planned waits. */
export class Execution {
  readonly runId: string;
  readonly executionId: string;
  readonly attempt: number;
  readonly events: TetherEvent[];
  readonly cron: CronTick | undefined;
  readonly memo: ReadonlyMap<string, MemoizedStep>;
  /** Memoized steps the code has not reached yet. */
  readonly unreached: Set<string>;
  readonly stepAttempts: ReadonlyMap<string, number>;
  readonly stepNotBefore: ReadonlyMap<string, number>;
  readonly trace: TraceIds | null;
  readonly limits: Limits;
  readonly log: Logger | undefined;
  readonly ids = new StepIds();
  stepCount: number;
  /** Bytes of memoized outputs: the run's state, which has a limit. */
  stateBytes: number;
  readonly newSteps: string[] = [];
  readonly planned: PlannedWait[] = [];
  cancelled = false;
  /** Set once the terminal outcome is sent: branches still running start and report nothing. */
  finished = false;
  /** Steps whose user code is running now. */
  active = 0;
  /** Step calls that can never return in this execution (a planned wait, a failed step). */
  parked = 0;
  /** Bumped on every step call; tells whether parallel branches still move. */
  version = 0;

  readonly #function: ExecutableFunction;
  readonly #memoOrder: ReadonlyMap<string, number>;
  #nextMemo = 0;
  readonly #memoWaiters = new Map<number, () => void>();
  readonly #emit: (outcome: Outcome) => void;
  readonly #send: ((events: WireEvent[]) => Promise<string[]>) | undefined;
  readonly #changed = new Signal();
  readonly #serverBaseMs: number;
  readonly #monotonicBaseMs: number;

  constructor(fn: ExecutableFunction, execute: Execute, options: ExecutionOptions = {}) {
    this.#function = fn;
    this.runId = execute.runId;
    this.executionId = execute.executionId;
    this.attempt = execute.attempt;
    this.events = execute.events.map(eventFromWire);
    this.cron = execute.cron === undefined ? undefined : cronFromWire(execute.cron);
    this.memo = new Map(execute.steps.map((s) => [s.stepId, s]));
    this.unreached = new Set(this.memo.keys());
    // Memoized results are handed back in the order they were recorded, so that
    // parallel branches interleave on replay as they did the first time (and
    // repeated step ids get the same suffixes). Sequential code asks for them in
    // that order anyway and never waits.
    this.#memoOrder = new Map(execute.steps.map((s, index) => [s.stepId, index]));
    this.stepAttempts = new Map(Object.entries(execute.stepAttempts));
    this.stepNotBefore = new Map(Object.entries(execute.stepNotBeforeMs));
    this.trace = parseTraceparent(execute.trace?.traceparent);
    this.limits = options.limits ?? DEFAULT_LIMITS;
    this.log = options.log;
    this.#emit = options.emit ?? (() => undefined);
    this.#send = options.send;
    this.stepCount = this.memo.size;
    this.stateBytes = execute.steps.reduce(
      (total, s) => total + (s.result?.$case === "output" ? s.result.value.length : 0),
      0,
    );
    this.#serverBaseMs = execute.serverTimeMs === 0 ? Date.now() : execute.serverTimeMs;
    this.#monotonicBaseMs = performance.now();
  }

  get functionId(): string {
    return this.#function.id;
  }

  get retries(): number {
    return this.#function.retries;
  }

  // -- time and state ------------------------------------------------------------

  /** Now in the control plane's clock (which may be virtual). */
  now(): number {
    return this.#serverBaseMs + Math.floor(performance.now() - this.#monotonicBaseMs);
  }

  /** True while memoized steps remain that the code has not reached yet. */
  get replaying(): boolean {
    return this.unreached.size > 0;
  }

  /** The step's id with any `:n` suffix, and its hashed wire id. */
  allocate(stepId: string): [name: string, hashed: string] {
    const name = this.ids.allocate(stepId);
    this.version += 1;
    return [name, hashStepId(name)];
  }

  /**
   * The stored result of this step, once every result recorded before it has
   * been handed out; null for a step with no stored result. Returns at once
   * (not a promise) when nothing has to wait.
   */
  memoized(hashed: string): MemoizedStep | null | Promise<MemoizedStep> {
    const memo = this.memo.get(hashed);
    if (memo === undefined) return null;
    this.unreached.delete(hashed);
    const index = this.#memoOrder.get(hashed) ?? 0;
    if (index <= this.#nextMemo) {
      this.#handedOut(index);
      return memo;
    }
    return new Promise<MemoizedStep>((resolve) => {
      this.#memoWaiters.set(index, () => {
        this.#memoWaiters.delete(index);
        this.#handedOut(index);
        resolve(memo);
      });
      this.version += 1;
      this.#changed.set();
    });
  }

  #handedOut(index: number): void {
    this.#nextMemo = Math.max(this.#nextMemo, index + 1);
    this.#memoWaiters.get(this.#nextMemo)?.();
  }

  /**
   * Every branch waits for a result recorded later than one nobody asks for
   * (the code changed): hand out the earliest awaited one; the skipped results
   * stay unreached and are reported as non-determinism.
   */
  #skipUnclaimedMemos(): void {
    const index = Math.min(...this.#memoWaiters.keys());
    this.#nextMemo = index;
    this.#memoWaiters.get(index)?.();
    this.version += 1;
  }

  /** A memoized output as user code sees it; a memoized error is thrown as StepError. */
  memoizedResult(name: string, memo: MemoizedStep): unknown {
    if (memo.result?.$case === "error") {
      const error = memo.result.value;
      throw new StepError(name, error.name, error.message, error.stack);
    }
    return decodeJson(memo.result?.value);
  }

  noteNewStep(name: string): void {
    this.newSteps.push(name);
    this.stepCount += 1;
  }

  beginStep(): void {
    this.active += 1;
    this.version += 1;
  }

  endStep(): void {
    this.active -= 1;
    this.version += 1;
    if (this.parked > 0) this.#changed.set();
  }

  /** Blocks this step call for the rest of the execution. */
  park(): Promise<never> {
    this.parked += 1;
    this.version += 1;
    this.#changed.set();
    return PARKED;
  }

  /** No new step may start: the execution was cancelled or has ended. */
  get stopped(): boolean {
    return this.cancelled || this.finished;
  }

  emit(kind: OutcomeKind): void {
    if (this.finished) return;
    this.#emit({ seq: 0, executionId: this.executionId, runId: this.runId, kind });
  }

  // -- what steps report (the unit-test harness overrides these) ------------------

  stepCompleted(name: string, hashed: string, kind: StepKind, output: Buffer, startedMs: number): void {
    this.emit({
      $case: "stepCompleted",
      value: { stepId: hashed, name, kind, output, startedAtMs: startedMs, endedAtMs: this.now() },
    });
  }

  /**
   * Reports a failed attempt. In a worker the step call never returns: the
   * control plane decides when to retry. The harness retries or throws here.
   */
  async stepFailed(
    name: string,
    hashed: string,
    kind: StepKind,
    error: unknown,
    startedMs: number,
    attempt: number,
  ): Promise<void> {
    this.emit({
      $case: "stepFailed",
      value: {
        stepId: hashed,
        name,
        kind,
        error: errorInfo(error),
        retriable: !(error instanceof NonRetriableError),
        retryDelayMs: error instanceof RetryAfterError ? error.retryAfterMs : 0,
        startedAtMs: startedMs,
        endedAtMs: this.now(),
      },
    });
    this.log?.warn(
      `run ${this.runId}: step '${name}' failed (attempt ${attempt + 1}): ${errorName(error)}: ${errorMessage(error)}`,
    );
    await this.park();
  }

  /**
   * Reports a step that suspends the run (sleep, wait, invoke). In a worker
   * the call never returns; the harness returns the step's result at once.
   */
  async plan(wait: PlannedWait, _target?: unknown): Promise<unknown> {
    this.planned.push(wait);
    return this.park();
  }

  /** Sends the events of `step.sendEvent`; returns their ids. */
  async sendEvents(events: WireEvent[]): Promise<string[]> {
    if (this.#send === undefined) throw new Error("this execution cannot send events");
    return this.#send(events);
  }

  // -- driving the function -----------------------------------------------------------

  /**
   * The run was cancelled: start no further step. A step running now finishes
   * and reports its result; then the execution ends, reporting nothing more.
   */
  cancel(): void {
    this.cancelled = true;
    this.#changed.set();
  }

  /** Stops at once (the connection is gone): reports nothing more. */
  drop(): void {
    this.cancelled = true;
    this.finished = true;
    this.#changed.set();
  }

  /** Runs the function to its end, or until no branch can go on; reports the terminal outcome. */
  async run(): Promise<void> {
    let settled = false;
    let failed = false;
    let result: unknown;
    let failure: unknown;
    (async () => this.#function.execute(this))().then(
      (value) => {
        settled = true;
        result = value;
        this.#changed.set();
      },
      (error: unknown) => {
        settled = true;
        failed = true;
        failure = error;
        this.#changed.set();
      },
    );
    const suspended = await this.#untilDoneOrStuck(() => settled);
    try {
      if (this.cancelled) return;
      this.#reportDivergence();
      if (suspended) {
        this.emit({ $case: "suspended", value: { waits: this.planned } });
      } else {
        this.#reportResult(failed, failure, result);
      }
    } catch (error) {
      // Never end an execution without a terminal outcome: the run would be
      // re-executed forever.
      this.log?.error(`run ${this.runId}: could not report the execution's result`, error);
      this.emit({ $case: "runFailed", value: { error: errorInfo(error), retriable: false, retryDelayMs: 0 } });
    } finally {
      this.finished = true;
    }
  }

  /** Waits until the function settles (false) or no branch of it can make progress (true). */
  async #untilDoneOrStuck(settled: () => boolean): Promise<boolean> {
    for (;;) {
      await this.#changed.wait();
      this.#changed.clear();
      for (;;) {
        if (settled()) return false;
        if (this.cancelled && this.active === 0) return true;
        if ((this.parked === 0 && this.#memoWaiters.size === 0) || this.active > 0) break;
        const version = this.version;
        for (let turn = 0; turn < SETTLE_TURNS; turn += 1) await nextTurn();
        if (settled()) return false;
        if (this.active === 0 && this.version === version) {
          if (this.#memoWaiters.size > 0) {
            this.#skipUnclaimedMemos();
            continue;
          }
          return true;
        }
      }
    }
  }

  #reportDivergence(): void {
    if (this.unreached.size === 0) return;
    let message =
      `non-determinism in run ${this.runId}: ${this.unreached.size} memoized step(s) ` +
      "were never reached";
    if (this.newSteps.length > 0) {
      message += ` while new step(s) were met: ${this.newSteps.map((s) => `'${s}'`).join(", ")}`;
    }
    message += "; the function's code changed since this run started";
    this.log?.warn(message);
    this.emit({
      $case: "nonDeterminism",
      value: { message, newSteps: this.newSteps, unreachedStepIds: [...this.unreached].sort() },
    });
  }

  #reportResult(failed: boolean, failure: unknown, result: unknown): void {
    let error: unknown = failure;
    if (!failed) {
      let output: Buffer | undefined;
      try {
        output = encodeJson(result);
      } catch (problem) {
        if (!(problem instanceof NotSerializableError)) throw problem;
        error = new NonRetriableError(
          `function '${this.functionId}' returned a value that is not JSON-serializable: ` +
            `${problem.message} (return objects, arrays, strings, numbers, booleans or null)`,
        );
      }
      if (output !== undefined) {
        if (output.length <= this.limits.maxStepOutputBytes) {
          this.emit({ $case: "runCompleted", value: { output } });
          return;
        }
        error = new NonRetriableError(
          `function '${this.functionId}' returned ${output.length} bytes; ` +
            `the limit is ${this.limits.maxStepOutputBytes} bytes`,
        );
      }
    }
    const retriable = !(error instanceof NonRetriableError || error instanceof StepError);
    this.log?.warn(
      `run ${this.runId}: function '${this.functionId}' failed (attempt ${this.attempt + 1})` +
        `${retriable ? "" : ", not retriable"}: ${errorName(error)}: ${errorMessage(error)}`,
    );
    this.emit({
      $case: "runFailed",
      value: {
        error: errorInfo(error),
        retriable,
        retryDelayMs: error instanceof RetryAfterError ? error.retryAfterMs : 0,
      },
    });
  }
}
