// The onboarding flow, tested the way an app tests its own functions.
//
// TestEnvironment runs a real control plane on a virtual clock: the flow's 24 h
// and 48 h sleeps pass in milliseconds. runFunction runs the function alone
// with mocked steps.

import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";

import { TestEnvironment, runFunction } from "@tether/sdk/testing";

import * as services from "../services.js";
import { tether } from "../tether/client.js";
import { onboardingFlow } from "../tether/functions/index.js";

const HOUR_MS = 3_600_000;

async function signup(userId: number): Promise<string> {
  const [result] = await tether.send({
    name: "app/user.signup",
    data: { user_id: userId, email: `user${userId}@example.com` },
  });
  const runId = result?.runIds[0];
  assert.ok(runId, "the signup started no run");
  return runId;
}

describe("the onboarding flow on a control plane", () => {
  let env: TestEnvironment;

  before(async () => {
    env = await TestEnvironment.start(tether);
  });

  after(async () => {
    await env.stop();
  });

  beforeEach(() => {
    services.email.sent.length = 0;
    services.projects.owners.clear();
  });

  it("nudges a user without a project, two days after the guide", async () => {
    const run = await tether.runs.wait(await signup(1), { timeoutMs: 10_000 });

    assert.equal(run.status, "completed");
    assert.deepEqual(run.output, { user_id: 1, nudged: true });
    assert.deepEqual(
      services.email.sent.map((m) => [m.to, m.template]),
      [
        ["user1@example.com", "welcome"],
        ["user1@example.com", "getting-started"],
        ["user1@example.com", "nudge"],
      ],
    );
    const steps = new Map(run.steps.map((s) => [s.id, s]));
    assert.deepEqual(
      [...steps.keys()],
      ["send-welcome-email", "wait-1d", "send-getting-started-guide", "check-for-project", "wait-2d", "send-nudge-email"],
    );
    assert.equal(steps.get("check-for-project")?.output, false);
    const started = (id: string): number => steps.get(id)?.startedAt?.getTime() ?? Number.NaN;
    assert.ok(started("send-getting-started-guide") - started("send-welcome-email") >= 24 * HOUR_MS);
    assert.ok(started("send-nudge-email") - started("send-getting-started-guide") >= 48 * HOUR_MS);
  });

  it("does not nudge a user who has a project", async () => {
    services.projects.add(2);

    const run = await tether.runs.wait(await signup(2), { timeoutMs: 10_000 });

    assert.equal(run.status, "completed");
    assert.deepEqual(run.output, { user_id: 2, nudged: false });
    assert.deepEqual(
      services.email.sent.map((m) => m.template),
      ["welcome", "getting-started"],
    );
    assert.ok(!run.steps.some((s) => s.id === "wait-2d"));
  });

  it("stops the nudge once app/project.created recorded the project", async () => {
    const [recorded] = await tether.send({ name: "app/project.created", data: { user_id: 3 } });
    await tether.runs.wait(recorded?.runIds[0] ?? "", { timeoutMs: 10_000 });

    const run = await tether.runs.wait(await signup(3), { timeoutMs: 10_000 });

    assert.deepEqual(run.output, { user_id: 3, nudged: false });
  });

  it("fails a signup without an email at once, without retrying", async () => {
    // @ts-expect-error: the event's type requires an email; the control plane gets what is sent.
    const [result] = await tether.send({ name: "app/user.signup", data: { user_id: 4 } });

    const run = await tether.runs.wait(result?.runIds[0] ?? "", { timeoutMs: 10_000 });

    assert.equal(run.status, "failed");
    assert.match(run.error?.message ?? "", /needs data.user_id \(an integer\) and data.email/);
    assert.equal(run.attempt, 1);
    assert.deepEqual(services.email.sent, []);
  });
});

describe("the onboarding flow alone", () => {
  it("runs with mocked steps", async () => {
    services.email.sent.length = 0;
    const result = await runFunction(onboardingFlow, {
      event: { name: "app/user.signup", data: { user_id: 5, email: "five@example.com" } },
      steps: { "send-welcome-email": null, "check-for-project": true },
    });

    assert.equal(result.error, undefined);
    assert.deepEqual(result.output, { user_id: 5, nudged: false });
    assert.deepEqual(
      result.steps.map((s) => s.id),
      ["send-welcome-email", "wait-1d", "send-getting-started-guide", "check-for-project"],
    );
    assert.equal(result.step("wait-1d").sleptMs, 24 * HOUR_MS);
    assert.ok(result.step("send-welcome-email").mocked);
    assert.deepEqual(
      services.email.sent.map((m) => m.template),
      ["getting-started"],
    );
  });
});
