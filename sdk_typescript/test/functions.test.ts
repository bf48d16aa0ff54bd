// createFunction: ids, retries, triggers, cancelOn, timeouts, idempotency and
// duplicates. Every mistake is a ConfigError naming the function, the option
// and what is allowed, thrown when the function is declared.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { ConfigError, InvalidArgumentError, Tether, type FunctionOptions, type UntypedEvents } from "../src/index.js";
import { CronCatchUp } from "../src/gen/tether/v1/common.js";
import { silent } from "./support.js";

const noop = (): null => null;

function app(): Tether {
  return new Tether({ appId: "shop", address: "localhost:1", logger: silent });
}

/** Declares `options` as given, wrong types included, as plain JavaScript would. */
function declare(tether: Tether, options: object) {
  return tether.createFunction(options as FunctionOptions<UntypedEvents, string>, noop);
}

/** Asserts that declaring `options` throws ConfigError with exactly `message`, and registers nothing. */
function refuses(options: object, message: string): void {
  const tether = app();
  assert.throws(() => declare(tether, options), (error: unknown) => {
    assert.ok(error instanceof ConfigError, `not a ConfigError: ${String(error)}`);
    assert.equal(error.message, message);
    return true;
  });
  assert.deepEqual(tether.registeredFunctions, []);
}

describe("function ids", () => {
  for (const id of ["a", "onboarding-flow", "step-2-of-3", "x".repeat(128)]) {
    it(`accepts ${id.slice(0, 20)}`, () => {
      assert.equal(declare(app(), { id, event: "app/x" }).id, id);
    });
  }

  const suggestions: [string, string][] = [
    ["Onboarding_Flow", "onboarding-flow"],
    ["send welcome email", "send-welcome-email"],
    ["-leading", "leading"],
    ["double--dash", "double-dash"],
    ["trailing-", "trailing"],
    ["user.signup", "user-signup"],
    ["sendWelcomeEmail", "sendwelcomeemail"],
    ["!!!", "my-function"],
  ];
  for (const [id, suggestion] of suggestions) {
    it(`suggests '${suggestion}' for '${id}'`, () => {
      refuses(
        { id, event: "app/x" },
        `function id '${id}' is not kebab-case: use lowercase letters and digits joined by '-', like '${suggestion}'`,
      );
    });
  }

  it("refuses an id with a trailing newline", () => {
    assert.throws(() => declare(app(), { id: "onboarding-flow\n", event: "app/x" }), /not kebab-case/);
  });

  it("needs an id", () => {
    for (const id of [undefined, "", 5]) {
      refuses({ id, event: "app/x" }, "a function needs an id, like { id: 'send-welcome-email' }");
    }
  });

  it("limits an id to 128 characters", () => {
    refuses(
      { id: "x".repeat(129), event: "app/x" },
      `function id '${"x".repeat(40)}'... is 129 characters; the limit is 128`,
    );
  });

  it("needs options and a handler", () => {
    const tether = app();
    assert.throws(
      () => tether.createFunction(null as unknown as FunctionOptions<UntypedEvents, string>, noop),
      { name: "ConfigError", message: "createFunction needs options, like { id: 'send-welcome-email', event: 'app/user.signup' }" },
    );
    assert.throws(
      () => tether.createFunction({ id: "flow" }, "handler" as unknown as typeof noop),
      { name: "ConfigError", message: "function 'flow' needs a handler: async ({ event, step }) => { ... }" },
    );
    assert.deepEqual(tether.registeredFunctions, []);
  });

  it("is a ConfigError, an InvalidArgumentError with code INVALID_ARGUMENT", () => {
    assert.throws(
      () => declare(app(), { id: "Bad" }),
      (error: unknown) =>
        error instanceof ConfigError &&
        error instanceof InvalidArgumentError &&
        error.code === "INVALID_ARGUMENT" &&
        error.name === "ConfigError",
    );
  });

  it("needs an app id", () => {
    assert.throws(() => new Tether({ appId: "" }), {
      name: "ConfigError",
      message: "Tether needs an appId, like new Tether({ appId: 'shop' })",
    });
  });
});

describe("duplicate ids", () => {
  it("refuses a second function with the same id and keeps the first", () => {
    const tether = app();
    declare(tether, { id: "flow", event: "app/x" });
    assert.throws(() => declare(tether, { id: "flow", event: "app/y" }), {
      name: "ConfigError",
      message: "duplicate function id 'flow' in app 'shop': each function of an app needs its own id",
    });
    assert.deepEqual(
      tether.registeredFunctions.map((f) => f.definition.triggers),
      [[{ kind: { $case: "event", value: { name: "app/x", ifExpression: "" } } }]],
    );
  });

  it("counts onFailure's <id>-failure companion, declared after", () => {
    const tether = app();
    declare(tether, { id: "charge", onFailure: noop });
    assert.throws(() => declare(tether, { id: "charge-failure" }), {
      message: "duplicate function id 'charge-failure' in app 'shop': each function of an app needs its own id",
    });
  });

  it("counts onFailure's <id>-failure companion, declared before", () => {
    const tether = app();
    declare(tether, { id: "charge-failure" });
    assert.throws(() => declare(tether, { id: "charge", onFailure: noop }), {
      message: "duplicate function id 'charge-failure' in app 'shop': each function of an app needs its own id",
    });
    // Nothing of the refused function is registered.
    assert.deepEqual(
      tether.registeredFunctions.map((f) => f.id),
      ["charge-failure"],
    );
  });

  it("allows the same id in two apps", () => {
    const one = app();
    const two = new Tether({ appId: "billing", address: "localhost:1", logger: silent });
    declare(one, { id: "flow" });
    declare(two, { id: "flow" });
    assert.deepEqual(
      [...one.registeredFunctions, ...two.registeredFunctions].map((f) => [f.appId, f.id]),
      [
        ["shop", "flow"],
        ["billing", "flow"],
      ],
    );
  });

  it("lists functions in declaration order, each companion after its function", () => {
    const tether = app();
    for (const id of ["c", "a", "b"]) declare(tether, { id, ...(id === "a" ? { onFailure: noop } : {}) });
    assert.deepEqual(
      tether.registeredFunctions.map((f) => f.id),
      ["c", "a", "a-failure", "b"],
    );
  });

  it("refuses an onFailure that is not a function", () => {
    refuses({ id: "charge", onFailure: "notify" }, "function 'charge-failure' needs a handler: async ({ event, step }) => { ... }");
  });

  it(
    "refuses an id whose <id>-failure companion would be longer than 128 characters",
    () => {
      assert.throws(() => declare(app(), { id: "x".repeat(121), onFailure: noop }), {
        name: "ConfigError",
        message: /129 characters; the limit is 128/,
      });
    },
  );
});

describe("retries", () => {
  it("defaults to 4, sent explicitly", () => {
    const fn = declare(app(), { id: "flow" });
    assert.equal(fn.retries, 4);
    assert.equal(fn.definition.retries, 4);
  });

  for (const retries of [0, 1, 20]) {
    it(`accepts ${retries}`, () => {
      const fn = declare(app(), { id: "flow", retries });
      assert.equal(fn.retries, retries);
      assert.equal(fn.definition.retries, retries);
    });
  }

  for (const retries of [-1, 21, 100]) {
    it(`refuses ${retries}`, () => {
      refuses({ id: "flow", retries }, `function 'flow': retries must be between 0 and 20, not ${retries}`);
    });
  }

  for (const retries of [true, 2.5, "3", Number.NaN]) {
    it(`refuses ${String(retries)} (${typeof retries})`, () => {
      refuses({ id: "flow", retries }, "function 'flow': retries must be an integer");
    });
  }
});

describe("triggers", () => {
  const eventTrigger = (name: string, ifExpression = "") => ({ kind: { $case: "event", value: { name, ifExpression } } });
  const cronTrigger = (schedule: string, timezone = "", catchUp = CronCatchUp.CRON_CATCH_UP_ONE) => ({
    kind: { $case: "cron", value: { schedule, timezone, catchUp } },
  });

  it("an event", () => {
    assert.deepEqual(declare(app(), { id: "flow", event: "app/user.signup" }).definition.triggers, [
      eventTrigger("app/user.signup"),
    ]);
  });

  it("an event with if", () => {
    const fn = declare(app(), { id: "flow", event: "app/user.signup", if: "event.data.plan == 'pro'" });
    assert.deepEqual(fn.definition.triggers, [eventTrigger("app/user.signup", "event.data.plan == 'pro'")]);
  });

  it("an event name with a trailing wildcard", () => {
    assert.deepEqual(declare(app(), { id: "flow", event: "app/user.*" }).definition.triggers, [eventTrigger("app/user.*")]);
  });

  it("a cron, with tz and catchUp", () => {
    assert.deepEqual(declare(app(), { id: "a", cron: "0 9 * * *" }).definition.triggers, [cronTrigger("0 9 * * *")]);
    const modes: [string, CronCatchUp][] = [
      ["one", CronCatchUp.CRON_CATCH_UP_ONE],
      ["none", CronCatchUp.CRON_CATCH_UP_NONE],
      ["all", CronCatchUp.CRON_CATCH_UP_ALL],
    ];
    for (const [catchUp, mode] of modes) {
      const fn = declare(app(), { id: "b", cron: "0 9 * * *", tz: "Europe/Paris", catchUp });
      assert.deepEqual(fn.definition.triggers, [cronTrigger("0 9 * * *", "Europe/Paris", mode)]);
    }
  });

  it("an event and a cron together", () => {
    const fn = declare(app(), { id: "flow", event: "app/x", cron: "0 9 * * *" });
    assert.deepEqual(fn.definition.triggers, [eventTrigger("app/x"), cronTrigger("0 9 * * *")]);
  });

  it("a list of triggers, in order", () => {
    const fn = declare(app(), {
      id: "flow",
      triggers: [
        { event: "app/a" },
        { event: "app/b", if: "event.data.x > 1" },
        { cron: "0 0 * * *", tz: "UTC", catchUp: "none" },
      ],
    });
    assert.deepEqual(fn.definition.triggers, [
      eventTrigger("app/a"),
      eventTrigger("app/b", "event.data.x > 1"),
      cronTrigger("0 0 * * *", "UTC", CronCatchUp.CRON_CATCH_UP_NONE),
    ]);
  });

  it("none: the function only runs when invoked", () => {
    assert.deepEqual(declare(app(), { id: "flow" }).definition.triggers, []);
    assert.deepEqual(declare(app(), { id: "flow", triggers: [] }).definition.triggers, []);
  });

  it("refuses event (or cron) together with triggers", () => {
    const message = "function 'flow': give either event / cron or triggers, not both";
    refuses({ id: "flow", event: "app/a", triggers: [{ event: "app/b" }] }, message);
    refuses({ id: "flow", cron: "0 9 * * *", triggers: [] }, message);
  });

  it("refuses if without event", () => {
    const message = "function 'flow': 'if' goes with 'event' (or use triggers: [{ event, if }])";
    refuses({ id: "flow", if: "event.data.x" }, message);
    refuses({ id: "flow", if: "event.data.x", triggers: [{ event: "app/x" }] }, message);
    refuses({ id: "flow", if: "event.data.x", cron: "0 9 * * *" }, message);
  });

  it("refuses tz or catchUp without cron", () => {
    const message = "function 'flow': 'tz' and 'catchUp' go with 'cron'";
    refuses({ id: "flow", event: "app/x", tz: "Europe/Paris" }, message);
    refuses({ id: "flow", catchUp: "all" }, message);
  });

  for (const name of ["", "app/user signup"]) {
    it(`refuses the event name '${name}'`, () => {
      refuses(
        { id: "flow", event: name },
        `function 'flow': invalid event name '${name}' (non-empty, no whitespace, like 'app/user.signup')`,
      );
    });
  }

  it(
    "refuses an event name with a newline or a tab, showing it escaped",
    () => {
      refuses(
        { id: "flow", event: "app/x\n" },
        "function 'flow': invalid event name 'app/x\\n' (non-empty, no whitespace, like 'app/user.signup')",
      );
      refuses(
        { id: "flow", event: "\tapp/x" },
        "function 'flow': invalid event name '\\tapp/x' (non-empty, no whitespace, like 'app/user.signup')",
      );
    },
  );

  it("refuses an event name with a newline or a tab", () => {
    for (const name of ["app/x\n", "\tapp/x", "app/\u00a0x"]) {
      assert.throws(() => declare(app(), { id: "flow", event: name }), { name: "ConfigError", message: /invalid event name/ });
    }
  });

  it("refuses a bad event name inside the list", () => {
    assert.throws(() => declare(app(), { id: "flow", triggers: [{ event: "app/ok" }, { event: "bad name" }] }), {
      name: "ConfigError",
      message: /^function 'flow': invalid event name 'bad name'/,
    });
  });

  it("refuses a list entry that is not an object, and triggers that is not a list", () => {
    refuses({ id: "flow", triggers: ["app/ok"] }, "function 'flow': a trigger is { event, if } or { cron, tz }, not string");
    refuses(
      { id: "flow", triggers: "app/ok" },
      "function 'flow': triggers is a list like [{ event: 'app/x' }, { cron: '0 9 * * *' }]",
    );
  });

  it("refuses an empty cron schedule", () => {
    refuses({ id: "flow", cron: " " }, "function 'flow': a cron trigger needs a schedule such as '0 9 * * *'");
    refuses({ id: "flow", triggers: [{ cron: 5 }] }, "function 'flow': a cron trigger needs a schedule such as '0 9 * * *'");
  });

  it("refuses an unknown catchUp, naming the function", () => {
    refuses(
      { id: "flow", cron: "0 9 * * *", catchUp: "later" },
      "function 'flow': cron '0 9 * * *': catchUp is one of one, none, all, not 'later'",
    );
  });

  it("refuses catchUp values that are Object.prototype members", () => {
    assert.throws(() => declare(app(), { id: "flow", cron: "0 9 * * *", catchUp: "toString" }), {
      name: "ConfigError",
      message: /catchUp is one of one, none, all, not 'toString'/,
    });
  });

  it(
    "refuses a list entry with both event and cron",
    () => {
      assert.throws(() => declare(app(), { id: "flow", triggers: [{ event: "app/x", cron: "0 9 * * *" }] }), {
        name: "ConfigError",
        message: /^function 'flow': /,
      });
    },
  );
});

describe("cancelOn", () => {
  it("sends each entry with its match, if and timeout in ms", () => {
    const fn = declare(app(), {
      id: "flow",
      event: "app/order.placed",
      cancelOn: [
        { event: "app/order.cancelled", match: "data.order_id", timeout: "7d" },
        { event: "app/user.deleted", if: "async.data.user_id == event.data.user_id", timeout: 90_000 },
        { event: "app/stop" },
      ],
    });
    assert.deepEqual(fn.definition.cancelOn, [
      { event: "app/order.cancelled", match: "data.order_id", ifExpression: "", timeoutMs: 7 * 86_400_000 },
      { event: "app/user.deleted", match: "", ifExpression: "async.data.user_id == event.data.user_id", timeoutMs: 90_000 },
      { event: "app/stop", match: "", ifExpression: "", timeoutMs: 0 },
    ]);
  });

  it("takes a single entry as a list of one", () => {
    assert.deepEqual(declare(app(), { id: "flow", cancelOn: { event: "app/stop" } }).definition.cancelOn, [
      { event: "app/stop", match: "", ifExpression: "", timeoutMs: 0 },
    ]);
  });

  it("is empty by default", () => {
    assert.deepEqual(declare(app(), { id: "flow" }).definition.cancelOn, []);
  });

  const shape = "function 'flow': cancelOn entries look like { event: 'app/order.cancelled', match: 'data.order_id' }";
  it("refuses entries of the wrong shape", () => {
    refuses({ id: "flow", cancelOn: ["app/stop"] }, shape);
    refuses({ id: "flow", cancelOn: [null] }, shape);
    refuses({ id: "flow", cancelOn: [{ match: "data.id" }] }, shape);
    refuses({ id: "flow", cancelOn: [{ event: "app/stop", on: "x", after: "1h" }] }, `${shape}; unknown key(s) 'after', 'on'`);
  });

  it("refuses an entry without an event name", () => {
    refuses({ id: "flow", cancelOn: [{ event: "" }] }, "function 'flow': each cancelOn entry needs an event name");
    refuses({ id: "flow", cancelOn: [{ event: 5 }] }, "function 'flow': each cancelOn entry needs an event name");
  });

  it("refuses a bad timeout", () => {
    refuses(
      { id: "flow", cancelOn: [{ event: "app/stop", timeout: "soon" }] },
      "function 'flow': cancelOn timeout: invalid duration 'soon': write it like '30s', '1h30m', '500ms' or '2d' (units: ms, s, m, h, d, w)",
    );
    refuses(
      { id: "flow", cancelOn: [{ event: "app/stop", timeout: -1 }] },
      "function 'flow': cancelOn timeout: a duration cannot be negative: '-1'",
    );
  });
});

describe("timeouts", () => {
  it("sends start and finish in ms, 0 when not set", () => {
    assert.deepEqual(declare(app(), { id: "a", timeouts: { start: "10m", finish: "1h" } }).definition.timeouts, {
      startMs: 600_000,
      finishMs: 3_600_000,
    });
    assert.deepEqual(declare(app(), { id: "b", timeouts: { finish: 1500 } }).definition.timeouts, { startMs: 0, finishMs: 1500 });
    assert.deepEqual(declare(app(), { id: "c" }).definition.timeouts, { startMs: 0, finishMs: 0 });
  });

  it("refuses other shapes", () => {
    const message = "function 'flow': timeouts look like { start: '10m', finish: '1h' }";
    refuses({ id: "flow", timeouts: "1h" }, message);
    refuses({ id: "flow", timeouts: null }, message);
    refuses({ id: "flow", timeouts: { start: "1m", end: "1h" } }, message);
  });

  it("refuses a bad duration", () => {
    refuses(
      { id: "flow", timeouts: { finish: "1 hour" } },
      "function 'flow': timeouts: invalid duration '1 hour': write it like '30s', '1h30m', '500ms' or '2d' (units: ms, s, m, h, d, w)",
    );
    refuses(
      { id: "flow", timeouts: { start: [1] } },
      "function 'flow': timeouts: a duration is a string like '1h30m' or a number of milliseconds, not Array",
    );
  });
});

describe("idempotency", () => {
  it("sends the expression, empty by default", () => {
    assert.equal(declare(app(), { id: "a", idempotency: "event.data.order_id" }).definition.idempotency, "event.data.order_id");
    assert.equal(declare(app(), { id: "b" }).definition.idempotency, "");
  });

  it("refuses an empty or non-string expression", () => {
    const message = "function 'flow': idempotency is a CEL expression such as 'event.data.order_id'";
    refuses({ id: "flow", idempotency: "" }, message);
    refuses({ id: "flow", idempotency: 5 }, message);
  });
});

describe("what a function keeps", () => {
  it("its id, name (defaulting to the id), app and handler", () => {
    const tether = app();
    const handler = () => "done";
    const fn = tether.createFunction({ id: "onboarding-flow", event: "app/user.signup", retries: 2 }, handler);
    assert.equal(fn.id, "onboarding-flow");
    assert.equal(fn.name, "onboarding-flow");
    assert.equal(fn.appId, "shop");
    assert.equal(fn.retries, 2);
    assert.equal(fn.handler, handler);
    assert.deepEqual(tether.registeredFunctions, [fn]);
    assert.equal(declare(app(), { id: "digest", name: "Daily digest" }).name, "Daily digest");
    assert.equal(declare(app(), { id: "digest", name: "" }).name, "digest");
  });
});
