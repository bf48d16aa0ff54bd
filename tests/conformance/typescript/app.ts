// The TypeScript side of the conformance scenarios (tests/conformance/scenarios.json):
// one function per scenario, as the scenario's `function` text describes it.
//
// Steps record what ran in the ledger (TETHER_TEST_LEDGER) under the run's
// data.key; gates and switches are files in TETHER_TEST_GATE_DIR.

import { appendFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

import { type FunctionContext, NonRetriableError, RetryAfterError, StepError, Tether } from "@tether/sdk";

const tether = new Tether({ appId: "conformance" });

function keyOf(ctx: FunctionContext): string {
  const key: unknown = ctx.event.data.key;
  return typeof key === "string" ? key : "";
}

/** One ledger line: the run's key, what happened, when (wall clock, ms). */
function record(key: string, label: string): void {
  const path = process.env.TETHER_TEST_LEDGER;
  if (path === undefined) throw new Error("TETHER_TEST_LEDGER is not set");
  // One small append per line, so lines from several processes never interleave.
  appendFileSync(path, `${key}\t${label}\t${Date.now()}\n`);
}

function gateFile(ctx: FunctionContext, suffix: string): string {
  const dir = process.env.TETHER_TEST_GATE_DIR;
  if (dir === undefined) throw new Error("TETHER_TEST_GATE_DIR is not set");
  return join(dir, `${keyOf(ctx)}.${suffix}`);
}

/** Resolves once the run's gate is open (a file another process creates). */
async function gateOpened(ctx: FunctionContext): Promise<void> {
  while (!existsSync(gateFile(ctx, "open"))) await sleep(20);
}

tether.createFunction({ id: "memoized-steps", event: "conformance/memoized-steps" }, async (ctx) => {
  const one = await ctx.step.run("one", () => {
    record(keyOf(ctx), "one");
    return (ctx.event.data.n as number) + 1;
  });
  await ctx.step.sleep("nap", "1s");
  const two = await ctx.step.run("two", () => {
    record(keyOf(ctx), "two");
    return one * 10;
  });
  return { one, two };
});

tether.createFunction({ id: "retries-backoff", event: "conformance/retries-backoff", retries: 4 }, async (ctx) => {
  const result = await ctx.step.run("flaky", () => {
    record(keyOf(ctx), "flaky");
    if (ctx.attempt < 2) throw new Error(`attempt ${ctx.attempt} fails`);
    return "ok";
  });
  return { result };
});

tether.createFunction({ id: "non-retriable", event: "conformance/non-retriable" }, async (ctx) => {
  await ctx.step.run("fatal", () => {
    record(keyOf(ctx), "fatal");
    throw new NonRetriableError("no retry");
  });
  await ctx.step.run("after", () => {
    record(keyOf(ctx), "after");
  });
});

tether.createFunction({ id: "retry-after", event: "conformance/retry-after" }, async (ctx) => {
  const result = await ctx.step.run("limited", () => {
    record(keyOf(ctx), "limited");
    if (ctx.attempt === 0) throw new RetryAfterError("rate limited", "30s");
    return "done";
  });
  return { result };
});

tether.createFunction({ id: "caught-step-error", event: "conformance/caught-step-error", retries: 1 }, async (ctx) => {
  try {
    await ctx.step.run("doomed", () => {
      record(keyOf(ctx), "doomed");
      throw new Error("nope");
    });
  } catch (error) {
    if (!(error instanceof StepError)) throw error;
    const fallback = await ctx.step.run("fallback", () => {
      record(keyOf(ctx), "fallback");
      return "plan b";
    });
    return { caught: error.stepId, message: error.errorMessage, fallback };
  }
  throw new Error("the doomed step returned");
});

tether.createFunction({ id: "sleep", event: "conformance/sleep" }, async (ctx) => {
  await ctx.step.run("before", () => {
    record(keyOf(ctx), "before");
  });
  await ctx.step.sleep("three-days", "3d");
  await ctx.step.run("after", () => {
    record(keyOf(ctx), "after");
  });
  return "rested";
});

async function waitForApproval(ctx: FunctionContext): Promise<{ approved_by: unknown } | null> {
  const approval = await ctx.step.waitForEvent("approval", {
    event: "conformance/approved",
    timeout: "1d",
    match: "data.key",
  });
  return approval === null ? null : { approved_by: approval.data.approver };
}

tether.createFunction({ id: "wait-for-event-hit", event: "conformance/wait-for-event-hit" }, waitForApproval);
tether.createFunction({ id: "wait-for-event-timeout", event: "conformance/wait-for-event-timeout" }, waitForApproval);

const invokeChild = tether.createFunction({ id: "invoke-child" }, (ctx) => {
  record(keyOf(ctx), "child");
  return { doubled: (ctx.event.data.n as number) * 2 };
});

tether.createFunction({ id: "invoke", event: "conformance/invoke" }, async (ctx) => {
  const child = await ctx.step.invoke("double", { function: invokeChild, data: { n: 21, key: keyOf(ctx) } });
  return { child };
});

const nappingChild = tether.createFunction({ id: "napping-child" }, async (ctx) => {
  await ctx.step.sleep("nap", "1h");
  record(keyOf(ctx), `woke-${String(ctx.event.data.label)}`);
});

tether.createFunction({ id: "invoke-parent-close", event: "conformance/invoke-parent-close" }, async (ctx) => {
  for (const [label, parentClose] of [
    ["tied", undefined],
    ["kept", "abandon"],
  ] as const) {
    try {
      await ctx.step.invoke(label, {
        function: nappingChild,
        data: { label, key: keyOf(ctx) },
        timeout: "1m",
        ...(parentClose === undefined ? {} : { parentClose }),
      });
    } catch (error) {
      if (!(error instanceof StepError)) throw error;
    }
  }
  return "gave up";
});

tether.createFunction({ id: "send-event-once", event: "conformance/send-event-once" }, async (ctx) => {
  await ctx.step.sendEvent("notify", { name: "conformance/notified", data: { key: keyOf(ctx) } });
  if (ctx.attempt === 0) throw new Error("the body fails once after sending");
  return "sent";
});

tether.createFunction({ id: "notified-listener", event: "conformance/notified" }, (ctx) => {
  record(keyOf(ctx), "notified");
});

tether.createFunction({ id: "parallel-steps", event: "conformance/parallel-steps" }, async (ctx) => {
  const step = (label: string, value: number): Promise<number> =>
    ctx.step.run(label, () => {
      record(keyOf(ctx), label);
      return value;
    });
  return Promise.all([step("p1", 1), step("p2", 2), step("p3", 3)]);
});

tether.createFunction({ id: "checkpointing", event: "conformance/checkpointing" }, async (ctx) => {
  const one = await ctx.step.run("one", () => {
    record(keyOf(ctx), "one");
    return 1;
  });
  return ctx.step.run("two", async () => {
    record(keyOf(ctx), "two-start");
    await gateOpened(ctx);
    record(keyOf(ctx), "two-end");
    return one + 1;
  });
});

tether.createFunction({ id: "cancel", event: "conformance/cancel" }, async (ctx) => {
  await ctx.step.run("first", () => {
    record(keyOf(ctx), "first");
  });
  await ctx.step.waitForEvent("never", { event: "conformance/never-sent", timeout: "7d" });
  await ctx.step.run("after", () => {
    record(keyOf(ctx), "after");
  });
});

tether.createFunction(
  {
    id: "cancel-on",
    event: "conformance/cancel-on",
    cancelOn: [{ event: "conformance/cancel-on.stop", match: "data.key" }],
  },
  async (ctx) => {
    await ctx.step.run("first", () => {
      record(keyOf(ctx), "first");
    });
    await ctx.step.sleep("long", "7d");
    await ctx.step.run("after", () => {
      record(keyOf(ctx), "after");
    });
  },
);

tether.createFunction(
  { id: "idempotency", event: "conformance/idempotency", idempotency: "event.data.key" },
  async (ctx) => {
    await ctx.step.run("work", () => {
      record(keyOf(ctx), "work");
    });
    return "once";
  },
);

tether.createFunction({ id: "concurrency", event: "conformance/concurrency", concurrency: 1 }, async (ctx) => {
  await ctx.step.run("work", async () => {
    record(keyOf(ctx), "work-start");
    await sleep(150);
    record(keyOf(ctx), "work-end");
  });
  return "worked";
});

tether.createFunction(
  { id: "throttle", event: "conformance/throttle", throttle: { limit: 1, period: "10s" } },
  async (ctx) => {
    await ctx.step.run("work", () => {
      record(keyOf(ctx), "work");
    });
    return "throttled";
  },
);

tether.createFunction({ id: "cron", cron: "0 9 * * *", tz: "Europe/Paris", catchUp: "none" }, (ctx) => {
  if (ctx.cron === undefined) throw new Error("a cron run without its tick");
  record("cron", "tick");
  return {
    schedule: ctx.cron.schedule,
    timezone: ctx.cron.timezone,
    scheduled_at_ms: ctx.cron.scheduledAt.getTime(),
    event_name: ctx.event.name,
  };
});

tether.createFunction(
  {
    id: "batching",
    event: "conformance/batching",
    batchEvents: { maxSize: 3, timeout: "1m", key: "event.data.key" },
  },
  (ctx) => ({ count: ctx.events.length, seqs: ctx.events.map((e) => e.data.seq as unknown) }),
);

tether.createFunction(
  { id: "replay-from-failed-step", event: "conformance/replay-from-failed-step", retries: 0 },
  async (ctx) => {
    const prepare = await ctx.step.run("prepare", () => {
      record(keyOf(ctx), "prepare");
      return "ready";
    });
    const deliver = await ctx.step.run("deliver", () => {
      record(keyOf(ctx), "deliver");
      if (existsSync(gateFile(ctx, "broken"))) throw new Error("broken");
      return "delivered";
    });
    return { prepare, deliver };
  },
);

async function survive(ctx: FunctionContext): Promise<string> {
  await ctx.step.run("one", () => {
    record(keyOf(ctx), "one");
  });
  await ctx.step.run("blocker", async () => {
    record(keyOf(ctx), "blocker-start");
    await gateOpened(ctx);
    record(keyOf(ctx), "blocker-end");
  });
  await ctx.step.run("three", () => {
    record(keyOf(ctx), "three");
  });
  return "survived";
}

tether.createFunction({ id: "worker-killed-mid-step", event: "conformance/worker-killed-mid-step" }, survive);
tether.createFunction({ id: "control-plane-restart", event: "conformance/control-plane-restart" }, survive);

await tether.serve({ capacity: Number(process.env.TETHER_TEST_CAPACITY ?? "100") });
