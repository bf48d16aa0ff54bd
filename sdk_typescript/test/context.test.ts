// What a handler's context tells it: ctx.logger (silent while memoized steps
// replay, with the run's ids through child()), and ctx.attempt (the step's
// attempt inside its code, the body's outside).

import assert from "node:assert/strict";
import { setImmediate as nextTurn } from "node:timers/promises";
import { describe, it } from "node:test";

import { Tether, type FunctionContext } from "../src/index.js";
import type { Logger } from "../src/logger.js";
import { hashStepId } from "../src/stepIds.js";
import { runFunction } from "../src/testing/index.js";
import { CapturingLogger, ChildLogger, executeMessage, kinds, runExecution } from "./support.js";

function define<T>(logger: Logger, handler: (ctx: FunctionContext) => T) {
  return new Tether({ appId: "shop", address: "localhost:1", logger }).createFunction({ id: "flow" }, handler);
}

describe("ctx.logger", () => {
  it("is silent while memoized steps replay and speaks once the run reaches new ground", async () => {
    const logger = new CapturingLogger();
    const fn = define(logger, async ({ step, logger: log }) => {
      log.info("starting");
      await step.run("a", () => "new a");
      log.info("after a");
      await step.run("b", () => "new b");
      log.warn("after b");
      await step.run("c", () => {
        log.info("inside c");
        return "c";
      });
      log.error("done");
    });
    const outcomes = await runExecution(fn, executeMessage({}, { a: "memo a", b: "memo b" }));
    assert.deepEqual(kinds(outcomes), ["stepCompleted", "runCompleted"]);
    assert.deepEqual(
      logger.lines.map((line) => [line.level, line.args]),
      [
        ["warn", ["after b"]],
        ["info", ["inside c"]],
        ["error", ["done"]],
      ],
    );
  });

  it("speaks from the start when nothing is memoized", async () => {
    const logger = new CapturingLogger();
    const fn = define(logger, ({ logger: log }) => {
      log.debug("one", { n: 1 });
      log.info("two");
    });
    await runExecution(fn);
    assert.deepEqual(
      logger.lines.map((line) => [line.level, line.args]),
      [
        ["debug", ["one", { n: 1 }]],
        ["info", ["two"]],
      ],
    );
  });

  it("stays silent for the whole of an execution that only replays", async () => {
    const logger = new CapturingLogger();
    const fn = define(logger, async ({ step, logger: log }) => {
      log.info("before");
      await step.run("a", () => 1);
      log.info("between");
      await step.sleep("nap", "1h");
    });
    const outcomes = await runExecution(fn, executeMessage({}, { a: 1, nap: null, extra: 2 }));
    // `extra` was never reached: the code changed, so the run is still "replaying".
    assert.deepEqual(kinds(outcomes), ["nonDeterminism", "runCompleted"]);
    assert.deepEqual(logger.lines, []);
  });

  it("with child(), carries the run's, function's and execution's ids", async () => {
    const logger = new ChildLogger();
    const fn = define(logger, async ({ step, logger: log }) => {
      log.info("outside");
      await step.run("work", () => {
        log.info("inside");
      });
    });
    await runExecution(fn, executeMessage({ runId: "run-7", executionId: "exec-9" }));
    assert.deepEqual(
      logger.lines.map(({ args, fields: { runId, functionId, executionId } }) => [args, { runId, functionId, executionId }]),
      [
        [["outside"], { runId: "run-7", functionId: "flow", executionId: "exec-9" }],
        [["inside"], { runId: "run-7", functionId: "flow", executionId: "exec-9" }],
      ],
    );
    assert.deepEqual(logger.lines[0]?.fields, { runId: "run-7", functionId: "flow", executionId: "exec-9" });
  });

  it("with child(), carries the trace id when the run has one", async () => {
    const logger = new ChildLogger();
    const fn = define(logger, ({ logger: log }) => {
      log.info("traced");
    });
    const traceId = "0af7651916cd43dd8448eb211c80319c";
    await runExecution(fn, executeMessage({ trace: { traceparent: `00-${traceId}-b7ad6b7169203331-01`, tracestate: "" } }));
    assert.deepEqual(logger.lines[0]?.fields, { runId: "run-1", functionId: "flow", executionId: "exec-1", traceId });
  });

  it(
    "with child(), carries the step's id inside its code",
    async () => {
      const logger = new ChildLogger();
      const fn = define(logger, async ({ step, logger: log }) => {
        await step.run("work", () => {
          log.info("inside");
        });
      });
      await runExecution(fn);
      assert.equal(logger.lines[0]?.fields.stepId, "work");
    },
  );

  it("without child() writes to the logger itself", async () => {
    const logger = new CapturingLogger();
    await runExecution(define(logger, ({ logger: log }) => { log.info("plain"); }));
    assert.deepEqual(logger.lines, [{ level: "info", args: ["plain"], fields: {} }]);
  });

  it("speaks in the harness", async () => {
    const logger = new CapturingLogger();
    const fn = define(logger, async ({ step, logger: log }) => {
      log.info("start");
      await step.run("a", () => 1);
      log.info("end");
    });
    await runFunction(fn);
    assert.deepEqual(logger.messages, ["start", "end"]);
  });

  it(
    "speaks in the harness when steps are mocked",
    async () => {
      const logger = new CapturingLogger();
      const fn = define(logger, async ({ step, logger: log }) => {
        log.info("start");
        await step.run("a", () => 1);
        log.info("end");
      });
      await runFunction(fn, { steps: { a: 5 } });
      assert.deepEqual(logger.messages, ["start", "end"]);
    },
  );
});

describe("ctx.attempt", () => {
  it("is the step's attempt inside its code and the body's outside", async () => {
    const seen: [string, number][] = [];
    const fn = define(new CapturingLogger(), async (ctx) => {
      const { attempt } = ctx;
      seen.push(["top", attempt]);
      await ctx.step.run("charge", async () => {
        seen.push(["charge", ctx.attempt]);
        await nextTurn();
        seen.push(["charge after a turn", ctx.attempt]);
        seen.push(["destructured copy", attempt]);
      });
      seen.push(["body", ctx.attempt]);
      await ctx.step.run("email", () => {
        seen.push(["email", ctx.attempt]);
      });
    });
    const execute = executeMessage({ attempt: 2, stepAttempts: { [hashStepId("charge")]: 3 } });
    const outcomes = await runExecution(fn, execute);
    assert.deepEqual(kinds(outcomes), ["stepCompleted", "stepCompleted", "runCompleted"]);
    assert.deepEqual(seen, [
      ["top", 2],
      ["charge", 3],
      ["charge after a turn", 3],
      ["destructured copy", 2],
      ["body", 2],
      ["email", 0],
    ]);
  });

  it("is each parallel step's own", async () => {
    const seen = new Map<string, number>();
    const fn = define(new CapturingLogger(), async (ctx) => {
      await Promise.all(
        ["a", "b", "c"].map((id) =>
          ctx.step.run(id, async () => {
            await nextTurn();
            seen.set(id, ctx.attempt);
          }),
        ),
      );
      seen.set("body", ctx.attempt);
    });
    const execute = executeMessage({ attempt: 1, stepAttempts: { [hashStepId("a")]: 5, [hashStepId("c")]: 2 } });
    await runExecution(fn, execute);
    assert.deepEqual(Object.fromEntries(seen), { a: 5, b: 0, c: 2, body: 1 });
  });
});
