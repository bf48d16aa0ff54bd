// TestEnvironment and the admin clients against a real control plane (the
// `tether` command, on a virtual clock) with an in-process worker.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout } from "node:timers/promises";

import { NotFoundError, Tether, FailedPreconditionError } from "../src/index.js";
import { TestEnvironment } from "../src/testing/index.js";

const DAY_MS = 86_400_000;

type Events = {
  "env/sleepy": { data: { days: number } };
  "env/wait": { data: { key: string } };
  "env/ready": { data: { key: string } };
  "env/fails": { data: Record<string, never> };
};

const tether = new Tether<Events>({ appId: "environment-test", logger: { debug() {}, info() {}, warn() {}, error() {} } });

tether.createFunction({ id: "sleepy", event: "env/sleepy" }, async ({ event, step }) => {
  await step.sleep("long-nap", event.data.days * DAY_MS);
  return "rested";
});

tether.createFunction({ id: "waiter", event: "env/wait" }, async ({ step }) => {
  const ready = await step.waitForEvent("ready", { event: "env/ready", match: "data.key", timeout: "1h" });
  return ready?.data.key ?? null;
});

let failures = 0;
tether.createFunction({ id: "fails-once", event: "env/fails", retries: 0 }, async ({ step }) => {
  return step.run("flaky", () => {
    failures += 1;
    if (failures === 1) throw new Error("the first run fails");
    return "fixed";
  });
});

// Ticks the clock jumps past while other tests sleep start nothing (catchUp "none").
const nightly = tether.createFunction({ id: "nightly", cron: "0 3 * * *", tz: "Europe/Paris", catchUp: "none" }, ({ cron }) =>
  cron?.scheduledAt.toISOString() ?? null,
);

async function start(name: keyof Events, data: Record<string, unknown>): Promise<string> {
  const [result] = await tether.send({ name, data } as never);
  const runId = result?.runIds[0];
  assert.ok(runId, `${name} started no run`);
  return runId;
}

describe("TestEnvironment", () => {
  let env: TestEnvironment<Events>;

  before(async () => {
    env = await TestEnvironment.start(tether);
  });

  after(async () => {
    await env.stop();
  });

  it("passes three days of sleep on the virtual clock", async () => {
    const run = await tether.runs.wait(await start("env/sleepy", { days: 3 }), { timeoutMs: 10_000 });

    assert.equal(run.status, "completed");
    assert.equal(run.output, "rested");
    const nap = run.steps.find((s) => s.id === "long-nap");
    assert.equal((nap?.endedAt?.getTime() ?? 0) - (nap?.startedAt?.getTime() ?? 0), 3 * DAY_MS);
  });

  it("holds the clock so that an event reaches a waiting run before its timeout", async () => {
    const output = await env.holdClock(async () => {
      const runId = await start("env/wait", { key: "k1" });
      await tether.runs.wait(runId, { until: "waiting", timeoutMs: 10_000 });
      const [sent] = await tether.send({ name: "env/ready", data: { key: "k1" } });
      assert.deepEqual(sent?.resumedRunIds, [runId]);
      return (await tether.runs.wait(runId, { timeoutMs: 10_000 })).output;
    });
    assert.equal(output, "k1");
  });

  it("moves the clock by hand and to a function's next cron tick", async () => {
    const before = await env.now();
    const advanced = await env.advance("2h");
    assert.ok(advanced.getTime() - before.getTime() >= 2 * 3_600_000);

    const tick = await env.advanceToNextTick(nightly);
    assert.equal(tick.getUTCMinutes(), 0);
    const deadline = Date.now() + 10_000;
    let page = await tether.runs.list({ functionId: "nightly" });
    while (page.runs.length === 0 && Date.now() < deadline) {
      await setTimeout(20);
      page = await tether.runs.list({ functionId: "nightly" });
    }
    assert.equal(page.runs.length, 1, "the tick started no run, or more than one");
    const run = await tether.runs.wait(page.runs[0]?.id ?? "", { timeoutMs: 10_000 });
    assert.equal(run.output, tick.toISOString());
  });

  it("replays a failed run from the failed step, cancels, pauses and resumes through the admin clients", async () => {
    const failed = await tether.runs.wait(await start("env/fails", {}), { timeoutMs: 10_000 });
    assert.equal(failed.status, "failed");
    assert.equal(failed.error?.name, "StepError");

    const replay = await tether.runs.replay(failed.id, { fromFailedStep: true });
    assert.equal(replay.replayOf, failed.id);
    assert.equal((await tether.runs.wait(replay.id, { timeoutMs: 10_000 })).output, "fixed");
    await assert.rejects(tether.runs.cancel(replay.id), FailedPreconditionError);

    const listed = await tether.runs.list({ functionId: "fails-once", status: ["completed", "failed"] });
    assert.deepEqual(new Set(listed.runs.map((r) => r.id)), new Set([failed.id, replay.id]));

    const paused = await tether.functions.pause("sleepy", "hold");
    assert.equal(paused.paused, "hold");
    const held = await start("env/sleepy", { days: 1 });
    assert.equal((await tether.runs.get(held)).status, "queued");
    assert.equal(await tether.functions.resume("sleepy"), 1);
    assert.equal((await tether.runs.wait(held, { timeoutMs: 10_000 })).status, "completed");

    const waiting = await env.holdClock(async () => {
      const runId = await start("env/wait", { key: "never" });
      await tether.runs.wait(runId, { until: "waiting", timeoutMs: 10_000 });
      return tether.runs.cancel(runId, "no longer needed");
    });
    assert.equal(waiting.status, "cancelled");
    assert.equal(waiting.error?.message, "no longer needed");

    const functions = await tether.functions.list();
    assert.deepEqual(
      functions.map((f) => f.id),
      ["fails-once", "nightly", "sleepy", "waiter"],
    );
    assert.ok(functions.every((f) => f.connectedWorkers === 1));
    assert.ok((functions.find((f) => f.id === "nightly")?.nextFires[0]?.getTime() ?? 0) > 0);
  });

  it("names an unknown run in the error", async () => {
    await assert.rejects(tether.runs.get("01ABCDEFGHJKMNPQRSTVWXYZ00"), (error: unknown) => {
      assert.ok(error instanceof NotFoundError);
      assert.match(error.message, /01ABCDEFGHJKMNPQRSTVWXYZ00/);
      return true;
    });
  });
});


