// The FunctionDefinition a worker registers, field by field, for functions with
// every option set, and the `<id>-failure` companion that onFailure adds.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { FUNCTION_FAILED, Tether } from "../src/index.js";
import { runFunction } from "../src/testing/index.js";
import {
  ConcurrencyScope,
  CronCatchUp,
  FunctionDefinition,
  SingletonMode,
} from "../src/gen/tether/v1/common.js";
import { silent } from "./support.js";

const DAY_MS = 86_400_000;

function everything() {
  const tether = new Tether({ appId: "shop", address: "localhost:1", logger: silent });
  const digest = tether.createFunction(
    {
      id: "digest",
      name: "Daily digest",
      triggers: [
        { event: "app/user.signup" },
        { event: "app/plan.changed", if: "event.data.plan == 'pro'" },
        { cron: "0 9 * * *", tz: "Europe/Paris", catchUp: "all" },
        { cron: "*/5 * * * *" },
      ],
      retries: 0,
      idempotency: "event.data.user_id",
      cancelOn: [
        { event: "app/user.deleted", match: "data.user_id", if: "async.data.hard", timeout: "7d" },
        { event: "app/user.paused" },
      ],
      timeouts: { start: "10m", finish: "1h" },
      concurrency: [3, { limit: 1, key: "event.data.user_id", scope: "app" }],
      throttle: { limit: 10, period: "1m", key: "event.data.user_id" },
      rateLimit: { limit: 100, period: "1h", key: "event.data.ip" },
      debounce: { period: "30s", key: "event.data.doc", timeout: "5m" },
      priority: { run: "event.data.vip ? 600 : -600" },
      singleton: { key: "event.data.user_id", mode: "cancel" },
      retention: "90d",
      onFailure: ({ event }) => `${event.data.function_id} failed: ${event.data.error.message}`,
    },
    () => "sent",
  );
  const batched = tether.createFunction(
    {
      id: "import-rows",
      event: "app/row.added",
      batchEvents: { maxSize: 1000, timeout: "1h", key: "event.data.tenant" },
      concurrency: { limit: 5, key: "event.data.region", scope: "global" },
      throttle: { limit: 2, period: 1500, burst: 4 },
      priority: { run: "1" },
      retries: 20,
    },
    ({ events }) => events.length,
  );
  return { tether, digest, batched };
}

describe("a function with every option", () => {
  it("has exactly these fields", () => {
    const expected: FunctionDefinition = {
      id: "digest",
      name: "Daily digest",
      triggers: [
        { kind: { $case: "event", value: { name: "app/user.signup", ifExpression: "" } } },
        { kind: { $case: "event", value: { name: "app/plan.changed", ifExpression: "event.data.plan == 'pro'" } } },
        {
          kind: {
            $case: "cron",
            value: { schedule: "0 9 * * *", timezone: "Europe/Paris", catchUp: CronCatchUp.CRON_CATCH_UP_ALL },
          },
        },
        { kind: { $case: "cron", value: { schedule: "*/5 * * * *", timezone: "", catchUp: CronCatchUp.CRON_CATCH_UP_ONE } } },
      ],
      retries: 0,
      cancelOn: [
        { event: "app/user.deleted", match: "data.user_id", ifExpression: "async.data.hard", timeoutMs: 7 * DAY_MS },
        { event: "app/user.paused", match: "", ifExpression: "", timeoutMs: 0 },
      ],
      idempotency: "event.data.user_id",
      timeouts: { startMs: 600_000, finishMs: 3_600_000 },
      concurrency: [
        { limit: 3, key: "", scope: ConcurrencyScope.CONCURRENCY_SCOPE_FUNCTION },
        { limit: 1, key: "event.data.user_id", scope: ConcurrencyScope.CONCURRENCY_SCOPE_APP },
      ],
      throttle: { limit: 10, periodMs: 60_000, burst: 1, key: "event.data.user_id" },
      rateLimit: { limit: 100, periodMs: 3_600_000, key: "event.data.ip" },
      debounce: { periodMs: 30_000, key: "event.data.doc", timeoutMs: 300_000 },
      priority: { run: "event.data.vip ? 600 : -600" },
      batching: undefined,
      singleton: { key: "event.data.user_id", mode: SingletonMode.SINGLETON_MODE_CANCEL },
      retentionMs: 90 * 24 * 3_600_000,
    };
    assert.deepEqual(everything().digest.definition, expected);
  });

  it("a batched function has exactly these fields", () => {
    const expected: FunctionDefinition = {
      id: "import-rows",
      name: "import-rows",
      triggers: [{ kind: { $case: "event", value: { name: "app/row.added", ifExpression: "" } } }],
      retries: 20,
      cancelOn: [],
      idempotency: "",
      timeouts: { startMs: 0, finishMs: 0 },
      concurrency: [{ limit: 5, key: "event.data.region", scope: ConcurrencyScope.CONCURRENCY_SCOPE_GLOBAL }],
      throttle: { limit: 2, periodMs: 1500, burst: 4, key: "" },
      rateLimit: undefined,
      debounce: undefined,
      priority: { run: "1" },
      batching: { maxSize: 1000, timeoutMs: 3_600_000, key: "event.data.tenant" },
      singleton: undefined,
      retentionMs: 0,
    };
    assert.deepEqual(everything().batched.definition, expected);
  });

  it("survives protobuf encoding, retries 0 included", () => {
    const { digest, batched } = everything();
    for (const fn of [digest, batched]) {
      const decoded = FunctionDefinition.decode(FunctionDefinition.encode(fn.definition).finish());
      assert.deepEqual(decoded, FunctionDefinition.fromPartial(fn.definition));
    }
    // retries=0 is sent explicitly, not left for the control plane's default of 4.
    const decoded = FunctionDefinition.decode(FunctionDefinition.encode(digest.definition).finish());
    assert.equal(decoded.retries, 0);
  });
});

describe("the onFailure companion", () => {
  it("is registered right after its function", () => {
    const { tether, digest, batched } = everything();
    assert.deepEqual(
      tether.registeredFunctions.map((f) => f.id),
      ["digest", "digest-failure", "import-rows"],
    );
    assert.equal(tether.registeredFunctions[0], digest);
    assert.equal(tether.registeredFunctions[2], batched);
  });

  it("is triggered by the function's failures in this app, with its retries and no other option", () => {
    const companion = everything().tether.registeredFunctions[1];
    const expected: FunctionDefinition = {
      id: "digest-failure",
      name: "Daily digest (on failure)",
      triggers: [
        {
          kind: {
            $case: "event",
            value: {
              name: "tether/function.failed",
              ifExpression: 'event.data.function_id == "digest" && event.data.app_id == "shop"',
            },
          },
        },
      ],
      retries: 0,
      cancelOn: [],
      idempotency: "",
      timeouts: { startMs: 0, finishMs: 0 },
      concurrency: [],
      retentionMs: 0,
    };
    assert.deepEqual(companion?.definition, expected);
    assert.equal(companion.appId, "shop");
    assert.equal(FUNCTION_FAILED, "tether/function.failed");
  });

  it("quotes ids in its condition as CEL string literals", () => {
    const tether = new Tether({ appId: 'o"brien', address: "localhost:1", logger: silent });
    tether.createFunction({ id: "flow", onFailure: () => null }, () => null);
    const trigger = tether.registeredFunctions[1]?.definition.triggers[0]?.kind;
    assert.equal(trigger?.$case, "event");
    assert.equal(
      trigger.value.ifExpression,
      'event.data.function_id == "flow" && event.data.app_id == "o\\"brien"',
    );
  });

  it("runs its handler with the failed run's event", async () => {
    const companion = everything().tether.registeredFunctions[1];
    assert.ok(companion !== undefined);
    const result = await runFunction(companion, {
      event: {
        name: FUNCTION_FAILED,
        data: {
          app_id: "shop",
          function_id: "digest",
          run_id: "run-1",
          error: { name: "Error", message: "smtp down", stack: "" },
          event: null,
        },
      },
    });
    assert.equal(result.error, undefined);
    assert.equal(result.output, "digest failed: smtp down");
  });
});
