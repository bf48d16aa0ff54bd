// The shared test vectors (tests/vectors/sdk.json), which the Python SDK's
// unit tests read too: step ids, span ids, durations, JSON bytes, and whole
// executions whose outcomes must match byte for byte.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";

import { NonRetriableError, RetryAfterError, StepError } from "../src/errors.js";
import { Execution, type ExecutableFunction } from "../src/execution.js";
import { createContext } from "../src/function.js";
import { encodeJson } from "../src/json.js";
import { toMilliseconds } from "../src/durations.js";
import { StepIds, hashStepId, stepSpanId } from "../src/stepIds.js";
import type { Step } from "../src/step.js";
import { Outcome, type Execute } from "../src/gen/tether/v1/worker_service.js";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Op = Record<string, Json>;

interface Vectors {
  step_ids: { name: string; hashed: string }[];
  step_id_sequences: { calls: string[]; names: string[] }[];
  step_id_errors: { id: string; message: string }[];
  step_span_ids: { run_id: string; hashed: string; attempt: number; span_id: string }[];
  send_event_ids: { run_id: string; step: string; index: number; id: string }[];
  durations: { valid: [string, number][]; invalid: [string, string][] };
  json: { value: Json; bytes: string }[];
  execute_defaults: ExecuteSpec;
  executions: { name: string; execute?: Partial<ExecuteSpec>; code: Op[]; outcomes: { hex: string }[] }[];
}

interface ExecuteSpec {
  run_id: string;
  execution_id: string;
  function_id: string;
  attempt: number;
  server_time_ms: number;
  events: { id?: string; name: string; data?: Record<string, Json>; ts_ms?: number }[];
  steps: { name: string; output?: Json; error?: { name: string; message: string } }[];
  step_attempts: Record<string, number>;
  step_not_before_ms: Record<string, number>;
}

const vectors = JSON.parse(
  readFileSync(new URL("../../tests/vectors/sdk.json", import.meta.url), "utf8"),
) as Vectors;

describe("step ids", () => {
  for (const { name, hashed } of vectors.step_ids) {
    it(`hashes ${name.slice(0, 20)}`, () => {
      assert.equal(hashStepId(name), hashed);
    });
  }
  for (const { calls, names } of vectors.step_id_sequences) {
    it(`suffixes ${calls.join(",")}`, () => {
      const ids = new StepIds();
      assert.deepEqual(
        calls.map((call) => ids.allocate(call)),
        names,
      );
    });
  }
  for (const { id, message } of vectors.step_id_errors) {
    it(`refuses an id of ${id.length} characters`, () => {
      assert.throws(() => new StepIds().allocate(id), { message });
    });
  }
  for (const vector of vectors.step_span_ids) {
    it(`derives span id ${vector.span_id}`, () => {
      assert.equal(stepSpanId(vector.run_id, vector.hashed, vector.attempt), vector.span_id);
    });
  }
  for (const vector of vectors.send_event_ids) {
    it(`derives event id ${vector.id}`, async () => {
      const events = Array.from({ length: vector.index + 1 }, () => ({ name: "app/x" }));
      const outcomes = await runExecution({ run_id: vector.run_id }, [{ send: vector.step, events }]);
      const first = outcomes[0]?.kind;
      assert.equal(first?.$case, "stepCompleted");
      const ids = JSON.parse(first.value.output.toString("utf8")) as string[];
      assert.equal(ids[vector.index], vector.id);
    });
  }
});

describe("durations", () => {
  for (const [text, ms] of vectors.durations.valid) {
    it(`reads '${text}'`, () => {
      assert.equal(toMilliseconds(text), ms);
    });
  }
  for (const [text, message] of vectors.durations.invalid) {
    it(`refuses '${text}'`, () => {
      assert.throws(() => toMilliseconds(text), { message });
    });
  }
});

describe("JSON bytes", () => {
  for (const { value, bytes } of vectors.json) {
    it(`encodes ${bytes.slice(0, 20)}`, () => {
      assert.equal(encodeJson(value).toString("utf8"), bytes);
    });
  }
});

describe("executions", () => {
  for (const vector of vectors.executions) {
    it(vector.name, async () => {
      const outcomes = await runExecution(vector.execute ?? {}, vector.code);
      assert.deepEqual(
        outcomes.map((o) => Buffer.from(Outcome.encode(o).finish()).toString("hex")),
        vector.outcomes.map((o) => o.hex),
      );
    });
  }
});

// -- running a vector's execution ---------------------------------------------------------

function makeError(op: Op): Error {
  const name = (op.throws ?? op.throw) as string;
  const message = op.message as string;
  if (name === "NonRetriableError") return new NonRetriableError(message);
  if (name === "RetryAfterError") return new RetryAfterError(message, op.delay as string);
  assert.equal(name, "Error", `unknown error ${name} in a vector`);
  return new Error(message);
}

async function interpret(ops: Op[], step: Step): Promise<unknown[]> {
  const results: unknown[] = [];
  for (const op of ops) results.push(await perform(op, step));
  return results;
}

async function perform(op: Op, step: Step): Promise<unknown> {
  if (typeof op.run === "string") {
    if (op.throws !== undefined) {
      return step.run(op.run, () => {
        throw makeError(op);
      });
    }
    return step.run(op.run, (): unknown => op.returns);
  }
  if (typeof op.sleep === "string") {
    await step.sleep(op.sleep, op.duration as string);
    return null;
  }
  if (typeof op.wait === "string") {
    const event = await step.waitForEvent(op.wait, {
      event: op.event as string,
      timeout: op.timeout as string,
      ...(typeof op.match === "string" ? { match: op.match } : {}),
    });
    return event === null ? null : { id: event.id, data: event.data };
  }
  if (typeof op.invoke === "string") {
    return step.invoke(op.invoke, {
      function: op.function as string,
      data: (op.data ?? {}) as Record<string, unknown>,
    });
  }
  if (typeof op.send === "string") {
    return (await step.sendEvent(op.send, op.events as { name: string }[])).ids;
  }
  if (Array.isArray(op.parallel)) {
    return Promise.all((op.parallel as Op[][]).map((branch) => interpret(branch, step)));
  }
  if (Array.isArray(op.catch)) {
    try {
      return await interpret(op.catch as Op[], step);
    } catch (error) {
      if (error instanceof StepError) return { caught: error.message };
      throw error;
    }
  }
  if (op.throw !== undefined) throw makeError(op);
  throw new Error(`unknown operation ${JSON.stringify(op)} in a vector`);
}

function executeMessage(fields: Partial<ExecuteSpec>): Execute {
  const spec: ExecuteSpec = { ...vectors.execute_defaults, ...fields };
  const base = spec.server_time_ms;
  return {
    executionId: spec.execution_id,
    runId: spec.run_id,
    functionId: spec.function_id,
    attempt: spec.attempt,
    serverTimeMs: base,
    leaseDeadlineMs: 0,
    events: spec.events.map((e) => ({
      id: e.id ?? "",
      name: e.name,
      data: encodeJson(e.data ?? {}),
      user: Buffer.alloc(0),
      tsMs: e.ts_ms ?? 0,
    })),
    steps: spec.steps.map((memo) => ({
      stepId: hashStepId(memo.name),
      result:
        memo.error === undefined
          ? { $case: "output" as const, value: encodeJson(memo.output) }
          : { $case: "error" as const, value: { ...memo.error, stack: "" } },
    })),
    stepAttempts: Object.fromEntries(Object.entries(spec.step_attempts).map(([name, n]) => [hashStepId(name), n])),
    stepNotBeforeMs: Object.fromEntries(
      Object.entries(spec.step_not_before_ms).map(([name, offset]) => [hashStepId(name), base + offset]),
    ),
  };
}

const silent = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

/** The outcomes of running `code` on the vector's Execute, normalized. */
async function runExecution(fields: Partial<ExecuteSpec>, code: Op[]): Promise<Outcome[]> {
  const execute = executeMessage(fields);
  const outcomes: Outcome[] = [];
  const fn: ExecutableFunction = {
    id: execute.functionId,
    retries: 4,
    execute: (execution) => interpret(code, createContext(execution, silent).step),
  };
  const execution = new Execution(fn, execute, {
    emit: (outcome) => outcomes.push(outcome),
    send: (events) => Promise.resolve(events.map((e, i) => (e.id === "" ? `assigned-${i}` : e.id))),
    log: silent,
  });
  await execution.run();
  outcomes.forEach((outcome, index) => {
    outcome.seq = index + 1;
    normalize(outcome, execute.serverTimeMs);
  });
  return outcomes;
}

/** Times as whole seconds after the Execute's server time; no stacks. */
function normalize(outcome: Outcome, base: number): void {
  const rel = (ms: number): number => (ms === 0 ? 0 : Math.floor((ms - base) / 1000) * 1000);
  const kind = outcome.kind;
  switch (kind?.$case) {
    case "stepCompleted":
      kind.value.startedAtMs = rel(kind.value.startedAtMs);
      kind.value.endedAtMs = rel(kind.value.endedAtMs);
      break;
    case "stepFailed":
      kind.value.startedAtMs = rel(kind.value.startedAtMs);
      kind.value.endedAtMs = rel(kind.value.endedAtMs);
      if (kind.value.error !== undefined) kind.value.error.stack = "";
      break;
    case "runFailed":
      if (kind.value.error !== undefined) kind.value.error.stack = "";
      break;
    case "suspended":
      for (const wait of kind.value.waits) {
        wait.startedAtMs = rel(wait.startedAtMs);
        const planned = wait.kind;
        if (planned?.$case === "sleep") planned.value.untilMs = rel(planned.value.untilMs);
        if (planned?.$case === "waitForEvent") planned.value.timeoutUntilMs = rel(planned.value.timeoutUntilMs);
        if (planned?.$case === "invoke") planned.value.timeoutUntilMs = rel(planned.value.timeoutUntilMs);
      }
      break;
    default:
      break;
  }
}
