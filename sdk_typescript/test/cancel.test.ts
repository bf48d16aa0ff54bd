// Stopping an execution. cancel() (the run was cancelled): a step already
// running finishes and reports, nothing else starts, no terminal outcome.
// drop() (the connection is gone): nothing more is reported at all.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { Tether, type FunctionContext } from "../src/index.js";
import { capturing, gate, kinds, silent } from "./support.js";

function define<T>(handler: (ctx: FunctionContext) => T) {
  return new Tether({ appId: "shop", address: "localhost:1", logger: silent }).createFunction({ id: "flow" }, handler);
}

/** A function whose step `slow` runs until the test releases it, then more steps. */
function slowThenMore(fail = false) {
  const started = gate();
  const release = gate();
  const ran: string[] = [];
  const fn = define(async ({ step }) => {
    await step.run("first", () => "quick");
    await step.run("slow", async () => {
      started.open(undefined);
      await release.promise;
      ran.push("slow finished");
      if (fail) throw new Error("slow broke");
      return "slow";
    });
    ran.push("body went on");
    await step.run("next", () => {
      ran.push("next started");
    });
    return "done";
  });
  return { fn, started, release, ran };
}

describe("cancel()", () => {
  it("lets the running step finish and report, starts nothing more, sends no terminal outcome", async () => {
    const { fn, started, release, ran } = slowThenMore();
    const { execution, outcomes } = capturing(fn);
    const done = execution.run();
    await started.promise;
    execution.cancel();
    assert.deepEqual(kinds(outcomes), ["stepCompleted"]);
    release.open(undefined);
    await done;
    assert.deepEqual(kinds(outcomes), ["stepCompleted", "stepCompleted"]);
    const last = outcomes[1]?.kind;
    assert.equal(last?.$case, "stepCompleted");
    assert.equal(last.value.name, "slow");
    assert.equal(last.value.output.toString("utf8"), '"slow"');
    assert.deepEqual(ran, ["slow finished"]);
    assert.equal(execution.finished, true);
  });

  it("reports a running step that fails, and nothing after it", async () => {
    const { fn, started, release, ran } = slowThenMore(true);
    const { execution, outcomes } = capturing(fn);
    const done = execution.run();
    await started.promise;
    execution.cancel();
    release.open(undefined);
    await done;
    assert.deepEqual(kinds(outcomes), ["stepCompleted", "stepFailed"]);
    const failed = outcomes[1]?.kind;
    assert.equal(failed?.$case, "stepFailed");
    assert.equal(failed.value.error?.message, "slow broke");
    assert.deepEqual(ran, ["slow finished"]);
  });

  it("starts no step in a parallel branch that reaches one after the cancel", async () => {
    const started = gate();
    const release = gate();
    const other = gate();
    const reached = gate();
    const ran: string[] = [];
    const fn = define(({ step }) =>
      Promise.all([
        step.run("slow", async () => {
          started.open(undefined);
          await release.promise;
          return "slow";
        }),
        (async () => {
          await other.promise;
          reached.open(undefined);
          return step.run("late", () => {
            ran.push("late started");
          });
        })(),
      ]),
    );
    const { execution, outcomes } = capturing(fn);
    const done = execution.run();
    await started.promise;
    execution.cancel();
    other.open(undefined);
    await reached.promise;
    release.open(undefined);
    await done;
    assert.deepEqual(ran, []);
    assert.deepEqual(
      outcomes.map((o) => (o.kind?.$case === "stepCompleted" ? o.kind.value.name : o.kind?.$case)),
      ["slow"],
    );
  });

  it("between steps ends the execution at once, and the next step never starts", async () => {
    const waiting = gate();
    const resume = gate();
    const reached = gate();
    const ran: string[] = [];
    const fn = define(async ({ step }) => {
      await step.run("first", () => 1);
      waiting.open(undefined);
      await resume.promise;
      const next = step.run("next", () => {
        ran.push("next started");
      });
      reached.open(undefined);
      await next;
      ran.push("body went on");
    });
    const { execution, outcomes } = capturing(fn);
    const done = execution.run();
    await waiting.promise;
    execution.cancel();
    await done;
    assert.deepEqual(kinds(outcomes), ["stepCompleted"]);
    resume.open(undefined);
    await reached.promise;
    assert.deepEqual(ran, []);
    assert.deepEqual(kinds(outcomes), ["stepCompleted"]);
  });

  it("before the execution runs: nothing runs and nothing is sent", async () => {
    let ran = false;
    const fn = define(({ step }) =>
      step.run("first", () => {
        ran = true;
      }),
    );
    const { execution, outcomes } = capturing(fn);
    execution.cancel();
    await execution.run();
    assert.equal(ran, false);
    assert.deepEqual(outcomes, []);
  });
});

describe("drop()", () => {
  it("sends nothing more, not even the running step's result", async () => {
    const { fn, started, release, ran } = slowThenMore();
    const { execution, outcomes } = capturing(fn);
    const done = execution.run();
    await started.promise;
    execution.drop();
    release.open(undefined);
    await done;
    assert.deepEqual(kinds(outcomes), ["stepCompleted"]);
    assert.equal(outcomes[0]?.kind?.$case === "stepCompleted" ? outcomes[0].kind.value.name : "", "first");
    assert.deepEqual(ran, ["slow finished"]);
  });

  it("sends no failure of the running step", async () => {
    const { fn, started, release } = slowThenMore(true);
    const { execution, outcomes } = capturing(fn);
    const done = execution.run();
    await started.promise;
    execution.drop();
    release.open(undefined);
    await done;
    assert.deepEqual(kinds(outcomes), ["stepCompleted"]);
  });

  it("between steps sends no terminal outcome, even when the function then returns", async () => {
    const waiting = gate();
    const resume = gate();
    const returned = gate();
    const fn = define(async ({ step }) => {
      await step.run("first", () => 1);
      waiting.open(undefined);
      await resume.promise;
      returned.open(undefined);
      return "done";
    });
    const { execution, outcomes } = capturing(fn);
    const done = execution.run();
    await waiting.promise;
    execution.drop();
    await done;
    resume.open(undefined);
    await returned.promise;
    assert.deepEqual(kinds(outcomes), ["stepCompleted"]);
  });
});
