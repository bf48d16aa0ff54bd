// Flow control options of createFunction: how they are written, what the wire
// carries, and the mistakes refused when the function is declared (the limits
// are the control plane's, controlplane/engine/validation.py).

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { ConfigError, Tether } from "../src/index.js";
import { ConcurrencyScope, SingletonMode, type FunctionDefinition } from "../src/gen/tether/v1/common.js";
import { silent } from "./support.js";

const noop = (): null => null;

function app(): Tether {
  return new Tether({ appId: "shop", address: "localhost:1", logger: silent });
}

/** The definition of function `sync` (triggered by `app/sync`) with these options, wrong types included. */
function declare(options: object): FunctionDefinition {
  const fn = app().createFunction(
    { id: "sync", event: "app/sync", ...options },
    noop,
  );
  return fn.definition;
}

const PREFIX = "function 'sync': ";

function refuses(options: object, problem: string): void {
  const tether = app();
  assert.throws(
    () => tether.createFunction({ id: "sync", event: "app/sync", ...options }, noop),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError, `not a ConfigError: ${String(error)}`);
      assert.equal(error.message, PREFIX + problem);
      return true;
    },
  );
  assert.deepEqual(tether.registeredFunctions, []);
}

describe("flow control as the wire carries it", () => {
  it("sets nothing when no option is given", () => {
    const definition = declare({});
    assert.deepEqual(definition.concurrency, []);
    for (const field of ["throttle", "rateLimit", "debounce", "priority", "batching", "singleton"] as const) {
      assert.equal(definition[field], undefined, field);
    }
  });

  for (const [label, value] of [
    ["a number", 5],
    ["an object", { limit: 5 }],
    ["a list of one", [5]],
    ["a list of one object", [{ limit: 5, scope: "fn" }]],
  ] as const) {
    it(`a concurrency limit as ${label}`, () => {
      assert.deepEqual(declare({ concurrency: value }).concurrency, [
        { limit: 5, key: "", scope: ConcurrencyScope.CONCURRENCY_SCOPE_FUNCTION },
      ]);
    });
  }

  it("two concurrency limits with keys and scopes", () => {
    const definition = declare({
      concurrency: [
        { limit: 10, key: "event.data.region", scope: "global" },
        { limit: 2, key: "event.data.customer_id", scope: "app" },
      ],
    });
    assert.deepEqual(definition.concurrency, [
      { limit: 10, key: "event.data.region", scope: ConcurrencyScope.CONCURRENCY_SCOPE_GLOBAL },
      { limit: 2, key: "event.data.customer_id", scope: ConcurrencyScope.CONCURRENCY_SCOPE_APP },
    ]);
  });

  it("no concurrency limit from an empty list", () => {
    assert.deepEqual(declare({ concurrency: [] }).concurrency, []);
  });

  it("throttle, its period in ms", () => {
    assert.deepEqual(declare({ throttle: { limit: 10, period: "1m", burst: 3, key: "event.data.user_id" } }).throttle, {
      limit: 10,
      periodMs: 60_000,
      burst: 3,
      key: "event.data.user_id",
    });
    assert.deepEqual(declare({ throttle: { limit: 10, period: 1500 } }).throttle, {
      limit: 10,
      periodMs: 1500,
      burst: 1,
      key: "",
    });
  });

  it("throttle's burst defaults to 1", () => {
    assert.equal(declare({ throttle: { limit: 1, period: "1s" } }).throttle?.burst, 1);
  });

  it("rateLimit", () => {
    assert.deepEqual(declare({ rateLimit: { limit: 100, period: "1h", key: "event.data.ip" } }).rateLimit, {
      limit: 100,
      periodMs: 3_600_000,
      key: "event.data.ip",
    });
    assert.deepEqual(declare({ rateLimit: { limit: 1, period: "24h" } }).rateLimit, { limit: 1, periodMs: 86_400_000, key: "" });
  });

  it("debounce, with and without a timeout", () => {
    assert.deepEqual(declare({ debounce: { period: "30s", key: "event.data.doc", timeout: "5m" } }).debounce, {
      periodMs: 30_000,
      key: "event.data.doc",
      timeoutMs: 300_000,
    });
    assert.deepEqual(declare({ debounce: { period: 2000 } }).debounce, { periodMs: 2000, key: "", timeoutMs: 0 });
  });

  it("priority", () => {
    assert.deepEqual(declare({ priority: { run: "event.data.plan == 'enterprise' ? 120 : 0" } }).priority, {
      run: "event.data.plan == 'enterprise' ? 120 : 0",
    });
  });

  it("batchEvents", () => {
    assert.deepEqual(declare({ batchEvents: { maxSize: 100, timeout: "5s", key: "event.data.tenant" } }).batching, {
      maxSize: 100,
      timeoutMs: 5000,
      key: "event.data.tenant",
    });
    assert.deepEqual(declare({ batchEvents: { maxSize: 1, timeout: "1h" } }).batching, { maxSize: 1, timeoutMs: 3_600_000, key: "" });
  });

  it("singleton, skipping by default", () => {
    assert.deepEqual(declare({ singleton: {} }).singleton, { key: "", mode: SingletonMode.SINGLETON_MODE_SKIP });
    assert.deepEqual(declare({ singleton: { key: "event.data.user_id", mode: "cancel" } }).singleton, {
      key: "event.data.user_id",
      mode: SingletonMode.SINGLETON_MODE_CANCEL,
    });
    assert.deepEqual(declare({ singleton: { key: "event.data.user_id", mode: "skip" } }).singleton, {
      key: "event.data.user_id",
      mode: SingletonMode.SINGLETON_MODE_SKIP,
    });
  });

  it("the bounds themselves are accepted", () => {
    const definition = declare({
      concurrency: [1, 100_000],
      throttle: { limit: 100_000, period: "7d", burst: 100_000 },
      debounce: { period: "1s", timeout: "7d" },
    });
    assert.deepEqual(
      definition.concurrency.map((c) => c.limit),
      [1, 100_000],
    );
    assert.equal(definition.throttle?.periodMs, 7 * 86_400_000);
    assert.deepEqual(declare({ rateLimit: { limit: 1, period: "1d" } }).rateLimit?.periodMs, 86_400_000);
    assert.deepEqual(declare({ batchEvents: { maxSize: 1000, timeout: "1s" } }).batching?.maxSize, 1000);
  });

  it("batchEvents combines with concurrency, throttle and priority", () => {
    const definition = declare({
      batchEvents: { maxSize: 10, timeout: "5s" },
      concurrency: 1,
      throttle: { limit: 1, period: "1s" },
      priority: { run: "1" },
    });
    assert.notEqual(definition.batching, undefined);
    assert.notEqual(definition.throttle, undefined);
  });

  it("leaves CEL to the control plane", () => {
    assert.equal(declare({ concurrency: { limit: 2, key: "evnt.data.x" } }).concurrency[0]?.key, "evnt.data.x");
  });
});

describe("flow control mistakes name the function, the option and the limit", () => {
  const cases: [string, object, string][] = [
    // wrong types
    ["concurrency as a string", { concurrency: "5" }, "concurrency is an object with the keys limit, key, scope, not string"],
    ["concurrency as a boolean", { concurrency: true }, "concurrency is an object with the keys limit, key, scope, not boolean"],
    ["a fractional concurrency", { concurrency: 2.5 }, "concurrency limit must be an integer, not 2.5"],
    ["a concurrency limit of another type", { concurrency: { limit: "5" } }, "concurrency limit must be an integer, not string"],
    ["throttle as a number", { throttle: 10 }, "throttle is an object with the keys limit, period, burst, key, not number"],
    ["throttle as a list", { throttle: [10, "1m"] }, "throttle is an object with the keys limit, period, burst, key, not an array"],
    ["a throttle limit of another type", { throttle: { limit: "10", period: "1m" } }, "throttle limit must be an integer, not string"],
    ["priority as a number", { priority: 5 }, "priority is an object with the keys run, not number"],
    [
      "a blank priority",
      { priority: { run: "  " } },
      "priority is a CEL expression giving seconds, such as \"event.data.plan == 'enterprise' ? 120 : 0\"",
    ],
    ["singleton as a string", { singleton: "event.data.user_id" }, "singleton is an object with the keys key, mode, not string"],
    [
      "a key that is not a string",
      { concurrency: { limit: 1, key: 5 } },
      "concurrency key is a CEL expression such as 'event.data.customer_id', not number",
    ],
    [
      "a throttle key that is not a string",
      { throttle: { limit: 1, period: "1s", key: true } },
      "throttle key is a CEL expression such as 'event.data.customer_id', not boolean",
    ],
    // unknown or missing keys
    [
      "an unknown throttle key",
      { throttle: { limit: 1, period: "1s", per: "1m" } },
      "throttle has unknown key(s) 'per'; it takes limit, period, burst, key",
    ],
    [
      "unknown concurrency keys",
      { concurrency: { limit: 1, scope: "app", keys: "x", by: "y" } },
      "concurrency has unknown key(s) 'by', 'keys'; it takes limit, key, scope",
    ],
    ["a rateLimit without period", { rateLimit: { limit: 1 } }, "rateLimit needs period"],
    ["an empty batchEvents", { batchEvents: {} }, "batchEvents needs maxSize, timeout"],
    ["a concurrency object without limit", { concurrency: { key: "event.data.x" } }, "concurrency needs limit"],
    ["a debounce without period", { debounce: { key: "event.data.x" } }, "debounce needs period"],
    // limits
    ["a concurrency of 0", { concurrency: 0 }, "concurrency limit must be between 1 and 100,000, not 0"],
    ["a concurrency over the limit", { concurrency: 100_001 }, "concurrency limit must be between 1 and 100,000, not 100001"],
    ["three concurrency limits", { concurrency: [1, 2, 3] }, "concurrency has 3 limits; the limit is 2"],
    ["a throttle limit of 0", { throttle: { limit: 0, period: "1m" } }, "throttle limit must be between 1 and 100,000, not 0"],
    ["a throttle burst of 0", { throttle: { limit: 1, period: "1m", burst: 0 } }, "throttle burst must be between 1 and 100,000, not 0"],
    ["a throttle period under 1s", { throttle: { limit: 1, period: "500ms" } }, "throttle period must be between 1s and 7d, not '500ms'"],
    ["a throttle period of 999 ms", { throttle: { limit: 1, period: 999 } }, "throttle period must be between 1s and 7d, not 999"],
    ["a throttle period over 7d", { throttle: { limit: 1, period: "8d" } }, "throttle period must be between 1s and 7d, not '8d'"],
    ["a rateLimit period over 1d", { rateLimit: { limit: 1, period: "25h" } }, "rateLimit period must be between 1s and 1d, not '25h'"],
    ["a negative rateLimit", { rateLimit: { limit: -1, period: "1h" } }, "rateLimit limit must be between 1 and 100,000, not -1"],
    ["a debounce period of 0", { debounce: { period: 0 } }, "debounce period must be between 1s and 7d, not 0"],
    [
      "a debounce timeout under 1s",
      { debounce: { period: "1m", timeout: "0.5s" } },
      "debounce timeout must be between 1s and 7d, not '0.5s'",
    ],
    [
      "a batch over 1,000 events",
      { batchEvents: { maxSize: 1001, timeout: "1s" } },
      "batchEvents maxSize must be between 1 and 1,000, not 1001",
    ],
    [
      "a batch timeout over 1h",
      { batchEvents: { maxSize: 10, timeout: "61m" } },
      "batchEvents timeout must be between 1s and 1h, not '61m'",
    ],
    // scopes and modes
    [
      "an app scope without a key",
      { concurrency: { limit: 1, scope: "app" } },
      "concurrency with scope 'app' needs a key: the key's value names the limit that functions share",
    ],
    [
      "a global scope with an empty key",
      { concurrency: [2, { limit: 1, scope: "global", key: "" }] },
      "concurrency with scope 'global' needs a key: the key's value names the limit that functions share",
    ],
    [
      "an unknown scope",
      { concurrency: { limit: 1, scope: "function" } },
      "concurrency scope is one of 'fn', 'app', 'global', not 'function'",
    ],
    ["a scope that is not a string", { concurrency: { limit: 1, scope: 2 } }, "concurrency scope is one of 'fn', 'app', 'global', not 2"],
    ["an unknown singleton mode", { singleton: { mode: "replace" } }, "singleton mode is one of 'skip', 'cancel', not 'replace'"],
    // durations
    [
      "a period in words",
      { throttle: { limit: 1, period: "1 minute" } },
      "throttle period is not a valid duration: invalid duration '1 minute': write it like '30s', '1h30m', '500ms' or '2d' (units: ms, s, m, h, d, w)",
    ],
    [
      "a period of another type",
      { debounce: { period: [1] } },
      "debounce period is not a valid duration: a duration is a string like '1h30m' or a number of milliseconds, not Array",
    ],
    [
      "a negative timeout",
      { batchEvents: { maxSize: 1, timeout: "-5s" } },
      "batchEvents timeout is not a valid duration: invalid duration '-5s': write it like '30s', '1h30m', '500ms' or '2d' (units: ms, s, m, h, d, w)",
    ],
    [
      "a negative period in ms",
      { rateLimit: { limit: 1, period: -1000 } },
      "rateLimit period is not a valid duration: a duration cannot be negative: '-1000'",
    ],
    [
      "an infinite period",
      { debounce: { period: Number.POSITIVE_INFINITY } },
      "debounce period is not a valid duration: a duration must be a finite number of milliseconds, not Infinity",
    ],
  ];
  for (const [label, options, problem] of cases) {
    it(label, () => {
      refuses(options, problem);
    });
  }

  it(
    "refuses a scope or mode named like an Object.prototype member",
    () => {
      refuses({ concurrency: { limit: 1, scope: "constructor", key: "event.data.x" } }, "concurrency scope is one of 'fn', 'app', 'global', not 'constructor'");
      refuses({ singleton: { mode: "toString" } }, "singleton mode is one of 'skip', 'cancel', not 'toString'");
    },
  );
});

describe("batchEvents and options that work on one event", () => {
  const clashes: [object, string][] = [
    [{ debounce: { period: "1m" } }, "debounce"],
    [{ idempotency: "event.data.id" }, "idempotency"],
    [{ rateLimit: { limit: 1, period: "1m" }, singleton: {} }, "rateLimit, singleton"],
    [{ cancelOn: [{ event: "app/stop" }] }, "cancelOn"],
    [
      {
        debounce: { period: "1m" },
        idempotency: "event.data.id",
        rateLimit: { limit: 1, period: "1m" },
        singleton: {},
        cancelOn: [{ event: "app/stop" }],
      },
      "debounce, idempotency, rateLimit, singleton, cancelOn",
    ],
  ];
  for (const [options, names] of clashes) {
    it(`refuses ${names}`, () => {
      refuses(
        { batchEvents: { maxSize: 10, timeout: "5s" }, ...options },
        `batchEvents cannot be combined with ${names}: a batched run has many events, and these options work on the one event of a run`,
      );
    });
  }

  it("allows an empty cancelOn list", () => {
    assert.notEqual(declare({ batchEvents: { maxSize: 10, timeout: "5s" }, cancelOn: [] }).batching, undefined);
  });
});
