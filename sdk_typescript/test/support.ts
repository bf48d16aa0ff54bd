// Helpers shared by the unit tests: an Execute to run, the outcomes an
// Execution emits, and loggers that record what they are told.

import { Execution, type ExecutableFunction } from "../src/execution.js";
import { encodeJson } from "../src/json.js";
import type { Logger } from "../src/logger.js";
import { hashStepId } from "../src/stepIds.js";
import type { Execute, MemoizedStep, Outcome } from "../src/gen/tether/v1/worker_service.js";

/** A logger that writes nothing. */
export const silent: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};

type Level = "debug" | "info" | "warn" | "error";

/** One line a capturing logger was given, with the fields of the child it was given to. */
export interface LogLine {
  level: Level;
  args: unknown[];
  fields: Record<string, string>;
}

/** A logger that records every call; with `child`, like pino, each child adds its fields. */
export class CapturingLogger implements Logger {
  constructor(
    readonly lines: LogLine[] = [],
    readonly fields: Record<string, string> = {},
  ) {}

  debug(...args: unknown[]): void {
    this.lines.push({ level: "debug", args, fields: this.fields });
  }

  info(...args: unknown[]): void {
    this.lines.push({ level: "info", args, fields: this.fields });
  }

  warn(...args: unknown[]): void {
    this.lines.push({ level: "warn", args, fields: this.fields });
  }

  error(...args: unknown[]): void {
    this.lines.push({ level: "error", args, fields: this.fields });
  }

  /** The first argument of each line, in order. */
  get messages(): unknown[] {
    return this.lines.map((line) => line.args[0]);
  }
}

/** A CapturingLogger with `child(fields)`, as pino, winston and bunyan have. */
export class ChildLogger extends CapturingLogger {
  child(fields: Record<string, string>): ChildLogger {
    return new ChildLogger(this.lines, { ...this.fields, ...fields });
  }
}

/** Step results as a test writes them: step id (as written) to output, or an error. */
export type Memo = Record<string, unknown>;

export function memoized(steps: Memo): MemoizedStep[] {
  return Object.entries(steps).map(([name, value]): MemoizedStep => {
    if (value instanceof Error) {
      return { stepId: hashStepId(name), result: { $case: "error", value: { name: value.name, message: value.message, stack: "" } } };
    }
    return { stepId: hashStepId(name), result: { $case: "output", value: encodeJson(value) } };
  });
}

export const SERVER_TIME_MS = 1_700_000_000_000;

/** An Execute for run `run-1` of function `flow`, with these memoized steps and fields. */
export function executeMessage(fields: Partial<Execute> = {}, steps: Memo = {}): Execute {
  return {
    executionId: "exec-1",
    runId: "run-1",
    functionId: "flow",
    attempt: 0,
    events: [{ id: "evt-1", name: "app/test", data: encodeJson({}), user: Buffer.alloc(0), tsMs: 0 }],
    steps: memoized(steps),
    stepAttempts: {},
    leaseDeadlineMs: 0,
    serverTimeMs: SERVER_TIME_MS,
    stepNotBeforeMs: {},
    ...fields,
  };
}

/** An Execution of `fn` whose outcomes land in `outcomes`. */
export function capturing(
  fn: ExecutableFunction,
  execute: Execute = executeMessage(),
  log: Logger = silent,
): { execution: Execution; outcomes: Outcome[] } {
  const outcomes: Outcome[] = [];
  const execution = new Execution(fn, execute, {
    emit: (outcome) => outcomes.push(outcome),
    send: (events) => Promise.resolve(events.map((e) => e.id)),
    log,
  });
  return { execution, outcomes };
}

/** Runs one execution of `fn` to its end and returns what it emitted. */
export async function runExecution(
  fn: ExecutableFunction,
  execute: Execute = executeMessage(),
  log: Logger = silent,
): Promise<Outcome[]> {
  const { execution, outcomes } = capturing(fn, execute, log);
  await execution.run();
  return outcomes;
}

/** The kinds of outcomes, in order: `["stepCompleted", "suspended"]`. */
export function kinds(outcomes: readonly Outcome[]): string[] {
  return outcomes.map((o) => o.kind?.$case ?? "none");
}

/** A promise with its resolve function, to hold a step until the test lets it go. */
export function gate<T = undefined>(): { promise: Promise<T>; open: (value: T) => void } {
  let open: (value: T) => void = () => undefined;
  const promise = new Promise<T>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}
