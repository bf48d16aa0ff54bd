// runFunction (@tether/sdk/testing): one function in-process, mocked steps,
// real steps retried at once, sleeps recorded, no control plane.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { NonRetriableError, RetryAfterError, StepError, Tether, type FunctionContext } from "../src/index.js";
import { hashStepId } from "../src/stepIds.js";
import { runFunction } from "../src/testing/index.js";
import { silent } from "./support.js";

const HOUR_MS = 3_600_000;

function define<T>(handler: (ctx: FunctionContext) => T, retries = 4) {
  const tether = new Tether({ appId: "shop", address: "localhost:1", logger: silent });
  return tether.createFunction({ id: "flow", event: "app/test", retries }, handler);
}

describe("mocked steps", () => {
  it("return the mock without running the code", async () => {
    const ran: string[] = [];
    const fn = define(async ({ step }) => {
      const user = await step.run("fetch-user", () => {
        ran.push("fetch-user");
        return { name: "real" };
      });
      return { greeting: `hello ${user.name}` };
    });
    const result = await runFunction(fn, { steps: { "fetch-user": { name: "Ada" } } });
    assert.deepEqual(ran, []);
    assert.equal(result.error, undefined);
    assert.deepEqual(result.output, { greeting: "hello Ada" });
    const call = result.step("fetch-user");
    assert.deepEqual(
      { kind: call.kind, mocked: call.mocked, output: call.output, attempts: call.attempts, error: call.error },
      { kind: "run", mocked: true, output: { name: "Ada" }, attempts: 0, error: undefined },
    );
  });

  it("an Error as a mock throws StepError where the function awaits the step", async () => {
    const fn = define(async ({ step }) => {
      try {
        await step.run("charge-card", () => "charged");
      } catch (error) {
        if (!(error instanceof StepError)) throw error;
        return { step: error.stepId, name: error.errorName, message: error.errorMessage };
      }
      return "no error";
    });
    const result = await runFunction(fn, { steps: { "charge-card": new TypeError("declined") } });
    assert.equal(result.error, undefined);
    assert.deepEqual(result.output, { step: "charge-card", name: "TypeError", message: "declined" });
    const call = result.step("charge-card");
    assert.equal(call.mocked, true);
    assert.ok(call.error instanceof StepError);
    assert.equal(call.error.message, "step 'charge-card' failed: TypeError: declined");
  });

  it("an uncaught mocked failure fails the function", async () => {
    const fn = define(({ step }) => step.run("charge-card", () => "charged"));
    const result = await runFunction(fn, { steps: { "charge-card": new NonRetriableError("card stolen") } });
    assert.equal(result.output, undefined);
    assert.ok(result.error instanceof StepError);
    assert.equal(result.error.message, "step 'charge-card' failed: NonRetriableError: card stolen");
  });

  it("a mock that is not JSON is refused", async () => {
    await assert.rejects(runFunction(define(() => null), { steps: { fetch: new Set([1]) } }), {
      name: "TypeError",
      message: "the mock for step 'fetch' is not JSON: a value of type 'Set' is not JSON-serializable",
    });
  });

  it("repeated step ids get suffixes and can be mocked one by one", async () => {
    const fn = define(async ({ step }) => {
      const results: string[] = [];
      for (let n = 0; n < 3; n += 1) results.push(await step.run("charge", () => `real ${n}`));
      return results;
    });
    const result = await runFunction(fn, { steps: { "charge:1": "mocked" } });
    assert.deepEqual(result.output, ["real 0", "mocked", "real 2"]);
    assert.deepEqual(
      result.steps.map((c) => [c.id, c.mocked]),
      [
        ["charge", false],
        ["charge:1", true],
        ["charge:2", false],
      ],
    );
  });

  it("a mocked wait for an event returns the mocked event", async () => {
    const fn = define(async ({ step }) => {
      const approval = await step.waitForEvent("wait-approval", { event: "app/order.approved", timeout: "1d" });
      return approval === null ? "timed out" : { by: approval.data.approver as unknown, name: approval.name };
    });
    const result = await runFunction(fn, {
      steps: { "wait-approval": { id: "evt-9", name: "app/order.approved", data: { approver: "grace" }, ts: 5 } },
    });
    assert.deepEqual(result.output, { by: "grace", name: "app/order.approved" });
  });
});

describe("real steps", () => {
  it("run, and their result is recorded", async () => {
    const fn = define(({ step }) => step.run("add", (a: number, b: number) => a + b, 2, 3));
    const result = await runFunction(fn);
    assert.equal(result.output, 5);
    const call = result.step("add");
    assert.deepEqual(
      { kind: call.kind, mocked: call.mocked, output: call.output, attempts: call.attempts, error: call.error },
      { kind: "run", mocked: false, output: 5, attempts: 1, error: undefined },
    );
  });

  it("a failing step is retried at once up to retries, then throws StepError", async () => {
    const attempts: number[] = [];
    const fn = define(async (ctx) => {
      await ctx.step.run("send-email", () => {
        attempts.push(ctx.attempt);
        throw new Error("smtp down");
      });
    }, 2);
    const result = await runFunction(fn);
    assert.deepEqual(attempts, [0, 1, 2]);
    assert.ok(result.error instanceof StepError);
    assert.equal(result.error.message, "step 'send-email' failed: Error: smtp down");
    assert.deepEqual(
      [result.error.stepId, result.error.errorName, result.error.errorMessage],
      ["send-email", "Error", "smtp down"],
    );
    const call = result.step("send-email");
    assert.equal(call.attempts, 3);
    assert.equal(call.error, result.error);
  });

  it("with retries 0 a step runs once", async () => {
    let calls = 0;
    const fn = define(async ({ step }) => {
      await step.run("fail", () => {
        calls += 1;
        throw new RangeError("boom");
      });
    }, 0);
    const result = await runFunction(fn);
    assert.equal(calls, 1);
    assert.ok(result.error instanceof StepError);
    assert.equal(result.error.errorName, "RangeError");
    assert.equal(result.step("fail").attempts, 1);
  });

  it("a step that succeeds on a retry returns its result", async () => {
    const fn = define((ctx) =>
      ctx.step.run("flaky", async () => {
        await Promise.resolve();
        if (ctx.attempt < 2) throw new Error(`attempt ${ctx.attempt}`);
        return `ok on attempt ${ctx.attempt}`;
      }),
    );
    const result = await runFunction(fn);
    assert.equal(result.error, undefined);
    assert.equal(result.output, "ok on attempt 2");
    const call = result.step("flaky");
    assert.deepEqual([call.attempts, call.output, call.error], [3, "ok on attempt 2", undefined]);
  });

  it("a caught StepError lets the function carry on", async () => {
    const fn = define(async ({ step }) => {
      try {
        await step.run("lookup", () => {
          throw new Error("missing");
        });
      } catch (error) {
        if (error instanceof StepError) return `fallback after ${error.errorName}`;
        throw error;
      }
      return "unreachable";
    }, 1);
    const result = await runFunction(fn);
    assert.equal(result.error, undefined);
    assert.equal(result.output, "fallback after Error");
    assert.equal(result.step("lookup").attempts, 2);
  });

  it("NonRetriableError is not retried", async () => {
    let calls = 0;
    const fn = define(async ({ step }) => {
      await step.run("validate", () => {
        calls += 1;
        throw new NonRetriableError("invalid address");
      });
    }, 5);
    const result = await runFunction(fn);
    assert.equal(calls, 1);
    assert.ok(result.error instanceof StepError);
    assert.equal(result.error.message, "step 'validate' failed: NonRetriableError: invalid address");
    assert.equal(result.step("validate").attempts, 1);
  });

  it("RetryAfterError is retried at once, whatever its delay", async () => {
    let calls = 0;
    const fn = define(({ step }) =>
      step.run("call-api", () => {
        calls += 1;
        if (calls === 1) throw new RetryAfterError("slow down", "1h");
        return "done";
      }),
    1);
    const result = await runFunction(fn);
    assert.equal(result.output, "done");
    assert.equal(calls, 2);
  });
});

describe("steps that suspend a run on a worker", () => {
  it("sleeps return at once and are recorded with sleptMs", async () => {
    const fn = define(async ({ step }) => {
      await step.sleep("wait-1d", "1d");
      await step.sleep("cool-off", "5m");
      await step.sleep("short", 1500);
      return step.run("after", () => "after");
    });
    const result = await runFunction(fn);
    assert.equal(result.error, undefined);
    assert.equal(result.output, "after");
    assert.deepEqual(
      result.steps.map((c) => [c.id, c.kind, c.sleptMs]),
      [
        ["wait-1d", "sleep", 24 * HOUR_MS],
        ["cool-off", "sleep", 300_000],
        ["short", "sleep", 1500],
        ["after", "run", undefined],
      ],
    );
  });

  it("sleepUntil is recorded with the time left", async () => {
    const before = Date.now();
    const until = new Date(before + 2 * HOUR_MS);
    const fn = define(async ({ step }) => {
      await step.sleepUntil("until-nine", until);
      return "woke";
    });
    const result = await runFunction(fn);
    const elapsed = Date.now() - before;
    assert.equal(result.output, "woke");
    const slept = result.step("until-nine").sleptMs ?? 0;
    // The harness's clock started after `before` and read it at the call.
    assert.ok(slept <= 2 * HOUR_MS && slept >= 2 * HOUR_MS - elapsed - 1, `slept ${slept} ms`);
  });

  it("repeated sleeps get suffixes", async () => {
    const fn = define(async ({ step }) => {
      for (let n = 0; n < 3; n += 1) await step.sleep("tick", "1m");
    });
    const result = await runFunction(fn);
    assert.deepEqual(
      result.steps.map((c) => c.id),
      ["tick", "tick:1", "tick:2"],
    );
  });

  it("a bad sleep duration fails the function, and no step is recorded", async () => {
    const result = await runFunction(define(({ step }) => step.sleep("wait", "soon")));
    assert.ok(result.error instanceof RangeError);
    assert.match(result.error.message, /^invalid duration 'soon'/);
    assert.deepEqual(result.steps, []);
  });

  it("waitForEvent returns null: no event arrives in the harness", async () => {
    const fn = define(async ({ step }) => {
      const approval = await step.waitForEvent("wait-approval", { event: "app/order.approved", timeout: "1d", match: "data.order_id" });
      return approval === null ? "timed out" : "approved";
    });
    const result = await runFunction(fn);
    assert.equal(result.output, "timed out");
    assert.equal(result.step("wait-approval").kind, "wait_for_event");
  });

  it("invoke of a TetherFunction runs it with the data and returns its output", async () => {
    const tether = new Tether({ appId: "shop", address: "localhost:1", logger: silent });
    const child = tether.createFunction({ id: "price" }, ({ event, step }) =>
      step.run("compute", () => ({ total: (event.data.qty as number) * 3, name: event.name })),
    );
    const parent = tether.createFunction({ id: "checkout" }, async ({ step }) => {
      const price = await step.invoke("get-price", { function: child, data: { qty: 4 } });
      return price.total + 1;
    });
    const result = await runFunction(parent);
    assert.equal(result.error, undefined);
    assert.equal(result.output, 13);
    const call = result.step("get-price");
    assert.equal(call.kind, "invoke");
    assert.deepEqual(call.output, { total: 12, name: "tether/function.invoked" });
  });

  it("invoke of a function that fails throws StepError", async () => {
    const tether = new Tether({ appId: "shop", address: "localhost:1", logger: silent });
    const child = tether.createFunction({ id: "price" }, () => {
      throw new NonRetriableError("no price list");
    });
    const parent = tether.createFunction({ id: "checkout" }, ({ step }) => step.invoke("get-price", { function: child }));
    const result = await runFunction(parent);
    assert.ok(result.error instanceof StepError);
    assert.equal(result.error.message, "step 'get-price' failed: NonRetriableError: no price list");
    assert.equal(result.step("get-price").error, result.error);
  });

  it("invoke by id cannot run in the harness: mock it", async () => {
    const fn = define(({ step }) => step.invoke("get-price", { function: "billing/price" }));
    const result = await runFunction(fn);
    assert.ok(result.error instanceof StepError);
    assert.equal(result.error.errorName, "InvokeError");
    assert.equal(
      result.error.errorMessage,
      "the harness runs only invoked functions passed as function objects; mock step 'get-price' instead",
    );
    const mocked = await runFunction(fn, { steps: { "get-price": { total: 1 } } });
    assert.deepEqual(mocked.output, { total: 1 });
  });

  it(
    "an invoked function's output reaches the parent as its JSON round trip",
    async () => {
      const tether = new Tether({ appId: "shop", address: "localhost:1", logger: silent });
      const child = tether.createFunction({ id: "stamp" }, () => ({ at: new Date(0) }));
      const parent = tether.createFunction({ id: "checkout" }, async ({ step }) => {
        const stamp = await step.invoke("stamp", { function: child });
        return typeof stamp.at;
      });
      assert.equal((await runFunction(parent)).output, "string");
    },
  );

  it("sendEvent records the events with ids derived from the run and the step", async () => {
    const fn = define(async ({ step }) => {
      const sent = await step.sendEvent("notify", [
        { name: "app/user.welcomed", data: { user_id: 1 } },
        { name: "app/user.tagged", data: { tag: "new" }, id: "my-own-id" },
      ]);
      const single = await step.sendEvent("notify", { name: "app/audit" });
      return [...sent.ids, ...single.ids];
    });
    const result = await runFunction(fn);
    const prefix = `harness-run-${hashStepId("notify").slice(0, 16)}`;
    const second = `harness-run-${hashStepId("notify:1").slice(0, 16)}`;
    assert.deepEqual(result.output, [`${prefix}-0`, "my-own-id", `${second}-0`]);
    assert.deepEqual(result.sentEvents, [
      { name: "app/user.welcomed", data: { user_id: 1 }, id: `${prefix}-0`, ts: 0 },
      { name: "app/user.tagged", data: { tag: "new" }, id: "my-own-id", ts: 0 },
      { name: "app/audit", data: {}, id: `${second}-0`, ts: 0 },
    ]);
    assert.deepEqual(
      result.steps.map((c) => [c.id, c.kind, c.output]),
      [
        ["notify", "send_event", [`${prefix}-0`, "my-own-id"]],
        ["notify:1", "send_event", [`${second}-0`]],
      ],
    );
  });

  it("sendEvent with no events fails the function", async () => {
    const result = await runFunction(define(({ step }) => step.sendEvent("notify", [])));
    assert.ok(result.error instanceof RangeError);
    assert.equal(result.error.message, "sendEvent 'notify': no events to send");
  });
});

describe("the result", () => {
  it("step(id) throws for a step never reached, listing those reached", async () => {
    const result = await runFunction(
      define(async ({ step }) => {
        await step.run("a", () => 1);
        await step.sleep("b", "1s");
      }),
    );
    assert.throws(() => result.step("c"), {
      name: "RangeError",
      message: "the function never reached step 'c'; it reached 'a', 'b'",
    });
    assert.equal(result.step("b").kind, "sleep");
  });

  it("an error outside any step is returned, not thrown", async () => {
    const result = await runFunction(
      define(async ({ step }) => {
        await step.run("first", () => null);
        throw new Error("no such plan");
      }),
    );
    assert.equal(result.output, undefined);
    assert.ok(result.error instanceof Error);
    assert.equal(result.error.message, "no such plan");
    assert.deepEqual(
      result.steps.map((c) => c.id),
      ["first"],
    );
  });

  it("the trigger event, a batch of events, and the default event reach the function", async () => {
    const fn = define(({ event, events }) => ({ name: event.name, data: event.data, count: events.length }));
    assert.deepEqual((await runFunction(fn, { event: { name: "app/user.signup", data: { user_id: 7 } } })).output, {
      name: "app/user.signup",
      data: { user_id: 7 },
      count: 1,
    });
    assert.deepEqual((await runFunction(fn)).output, { name: "test/event", data: {}, count: 1 });
    const batch = define(({ events }) => events.map((e) => e.data.n as number));
    assert.deepEqual((await runFunction(batch, { events: [0, 1, 2].map((n) => ({ name: "app/x", data: { n } })) })).output, [0, 1, 2]);
  });

  it("attempt outside steps is the run's attempt", async () => {
    const fn = define(({ attempt, runId, functionId }) => ({ attempt, runId, functionId }));
    assert.deepEqual((await runFunction(fn)).output, { attempt: 0, runId: "harness-run", functionId: "flow" });
    assert.deepEqual((await runFunction(fn, { attempt: 3 })).output, { attempt: 3, runId: "harness-run", functionId: "flow" });
  });
});
