// Errors user code throws to steer retries (NonRetriableError, RetryAfterError),
// StepError thrown into it, and the error names the wire carries.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { NonRetriableError, RetryAfterError, StepError, Tether } from "../src/index.js";
import { errorMessage, errorName } from "../src/errors.js";
import { executeMessage, runExecution, silent } from "./support.js";

describe("RetryAfterError", () => {
  for (const [delay, ms] of [
    ["30s", 30_000],
    ["1h30m", 5_400_000],
    [1500, 1500],
    [0, 0],
  ] as const) {
    it(`after ${JSON.stringify(delay)} is ${ms} ms`, () => {
      const error = new RetryAfterError("rate limited", delay);
      assert.equal(error.retryAfterMs, ms);
      assert.equal(error.message, "rate limited");
      assert.equal(error.name, "RetryAfterError");
      assert.ok(error instanceof Error);
    });
  }

  it("at a Date is the time left until then", () => {
    const before = Date.now();
    const error = new RetryAfterError("later", new Date(before + 60_000));
    const elapsed = Date.now() - before;
    assert.ok(error.retryAfterMs <= 60_000 && error.retryAfterMs >= 60_000 - elapsed, `${error.retryAfterMs} ms`);
  });

  it("at a Date in the past is now", () => {
    assert.equal(new RetryAfterError("late", new Date(Date.now() - 3_600_000)).retryAfterMs, 0);
  });

  it("refuses a bad duration", () => {
    assert.throws(() => new RetryAfterError("x", "5 parsecs"), { name: "RangeError", message: /^invalid duration '5 parsecs'/ });
    assert.throws(() => new RetryAfterError("x", -1), { name: "RangeError", message: "a duration cannot be negative: '-1'" });
    assert.throws(() => new RetryAfterError("x", Number.NaN), {
      name: "RangeError",
      message: "a duration must be a finite number of milliseconds, not NaN",
    });
  });

  it("refuses an invalid Date", () => {
    assert.throws(() => new RetryAfterError("x", new Date("not a date")), RangeError);
  });

  it("keeps its cause", () => {
    const cause = new Error("429");
    assert.equal(new RetryAfterError("slow down", "1s", { cause }).cause, cause);
  });

  it("sets the retry delay of a failed step and of a failed run", async () => {
    const tether = new Tether({ appId: "shop", address: "localhost:1", logger: silent });
    const step = tether.createFunction({ id: "step" }, ({ step }) =>
      step.run("call-api", () => {
        throw new RetryAfterError("slow down", "30s");
      }),
    );
    const body = tether.createFunction({ id: "body" }, () => {
      throw new RetryAfterError("not yet", 2500);
    });
    const [failed] = await runExecution(step);
    assert.equal(failed?.kind?.$case, "stepFailed");
    assert.deepEqual(
      [failed.kind.value.retriable, failed.kind.value.retryDelayMs, failed.kind.value.error?.name, failed.kind.value.error?.message],
      [true, 30_000, "RetryAfterError", "slow down"],
    );
    const [run] = await runExecution(body);
    assert.equal(run?.kind?.$case, "runFailed");
    assert.deepEqual([run.kind.value.retriable, run.kind.value.retryDelayMs], [true, 2500]);
  });
});

describe("NonRetriableError", () => {
  it("fails a step and a run for good", async () => {
    const tether = new Tether({ appId: "shop", address: "localhost:1", logger: silent });
    const step = tether.createFunction({ id: "step" }, ({ step }) =>
      step.run("validate", () => {
        throw new NonRetriableError("invalid address");
      }),
    );
    const body = tether.createFunction({ id: "body" }, () => {
      throw new NonRetriableError("no such plan");
    });
    const [failed] = await runExecution(step);
    assert.equal(failed?.kind?.$case, "stepFailed");
    assert.deepEqual([failed.kind.value.retriable, failed.kind.value.retryDelayMs], [false, 0]);
    const [run] = await runExecution(body);
    assert.equal(run?.kind?.$case, "runFailed");
    assert.deepEqual([run.kind.value.retriable, run.kind.value.error?.name], [false, "NonRetriableError"]);
  });
});

describe("StepError", () => {
  it("carries the step and the original error", () => {
    const error = new StepError("charge:1", "TypeError", "card declined", "TypeError: card declined\n    at ...");
    assert.equal(error.message, "step 'charge:1' failed: TypeError: card declined");
    assert.equal(error.name, "StepError");
    assert.deepEqual(
      [error.stepId, error.errorName, error.errorMessage, error.errorStack],
      ["charge:1", "TypeError", "card declined", "TypeError: card declined\n    at ..."],
    );
    assert.ok(error instanceof Error);
  });

  it("has an empty stack text when none is known", () => {
    assert.equal(new StepError("x", "Error", "boom").errorStack, "");
  });

  it("is raised from a memoized failure, and escaping the function fails the run for good", async () => {
    const tether = new Tether({ appId: "shop", address: "localhost:1", logger: silent });
    const fn = tether.createFunction({ id: "flow" }, ({ step }) => step.run("charge", () => "charged"));
    const outcomes = await runExecution(fn, executeMessage({}, { charge: new TypeError("declined") }));
    const [run] = outcomes;
    assert.equal(run?.kind?.$case, "runFailed");
    assert.equal(run.kind.value.retriable, false);
    assert.equal(run.kind.value.error?.name, "StepError");
    assert.equal(run.kind.value.error.message, "step 'charge' failed: TypeError: declined");
  });
});

describe("error names on the wire", () => {
  class PaymentDeclined extends Error {}
  class Named extends Error {
    override name = "CustomName";
  }
  class CardExpired extends PaymentDeclined {}
  class BadAmount extends RangeError {}
  class InvalidAddress extends NonRetriableError {}

  it("a built-in error is its name", () => {
    assert.equal(errorName(new Error("x")), "Error");
    assert.equal(errorName(new TypeError("x")), "TypeError");
    assert.equal(errorName(new NonRetriableError("x")), "NonRetriableError");
  });

  it("a subclass of Error is its class name", () => {
    assert.equal(errorName(new PaymentDeclined("x")), "PaymentDeclined");
    assert.equal(errorName(new CardExpired("x")), "CardExpired");
  });

  it("a subclass that sets its name is that name", () => {
    assert.equal(errorName(new Named("x")), "CustomName");
  });

  it(
    "a subclass of another error class is its class name, as in the Python SDK",
    () => {
      assert.equal(errorName(new BadAmount("x")), "BadAmount");
      assert.equal(errorName(new InvalidAddress("x")), "InvalidAddress");
    },
  );

  it("a thrown value that is not an Error", () => {
    assert.deepEqual(
      ["boom", 42, null, { code: 7 }, undefined, true].map((value) => [errorName(value), errorMessage(value)]),
      [
        ["string", "boom"],
        ["number", "42"],
        ["Error", "null"],
        ["Error", '{"code":7}'],
        ["undefined", "undefined"],
        ["boolean", "true"],
      ],
    );
    assert.equal(errorMessage(10n), "10");
  });

  it("reach the StepFailed a worker sends", async () => {
    const tether = new Tether({ appId: "shop", address: "localhost:1", logger: silent });
    const thrown: unknown[] = [new PaymentDeclined("card declined"), "boom", { code: 7 }];
    const reported: unknown[] = [];
    for (const [index, value] of thrown.entries()) {
      const fn = tether.createFunction({ id: `flow-${index}` }, ({ step }) =>
        step.run("charge", () => {
          throw value;
        }),
      );
      const [failed] = await runExecution(fn);
      assert.equal(failed?.kind?.$case, "stepFailed");
      const error = failed.kind.value.error;
      reported.push([error?.name, error?.message, failed.kind.value.retriable]);
    }
    assert.deepEqual(reported, [
      ["PaymentDeclined", "card declined", true],
      ["string", "boom", true],
      ["Error", '{"code":7}', true],
    ]);
  });
});
