// Step results and function outputs are JSON. Values JSON would silently change
// or drop are refused, naming the step and the type; a Date becomes its ISO
// string and undefined becomes null, exactly what every replay returns.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { StepError, Tether } from "../src/index.js";
import { NotSerializableError, decodeJson, encodeJson } from "../src/json.js";
import { runFunction } from "../src/testing/index.js";
import { kinds, runExecution, silent } from "./support.js";

class Point {
  constructor(
    readonly x: number,
    readonly y: number,
  ) {}
}

class Money {
  constructor(readonly cents: number) {}

  toJSON(): string {
    return `${this.cents / 100} EUR`;
  }
}

function cyclic(): object {
  const node: { name: string; self?: object } = { name: "loop" };
  node.self = node;
  return node;
}

const STEP_RESULTS = "(step results must be objects, arrays, strings, numbers, booleans or null)";

/** What JSON would change, with the type the message names and where. */
const refused: [string, () => unknown, string][] = [
  ["a Map", () => new Map([["a", 1]]), "a value of type 'Map' is not JSON-serializable"],
  ["a Set", () => new Set([1]), "a value of type 'Set' is not JSON-serializable"],
  ["a bigint", () => 10n, "a value of type 'bigint' is not JSON-serializable"],
  ["a function", () => () => 1, "a value of type 'function' is not JSON-serializable"],
  ["a symbol", () => Symbol("s"), "a value of type 'symbol' is not JSON-serializable"],
  ["NaN", () => Number.NaN, "NaN is not JSON (NaN and Infinity are not JSON)"],
  ["Infinity", () => Number.POSITIVE_INFINITY, "Infinity is not JSON (NaN and Infinity are not JSON)"],
  ["-Infinity", () => Number.NEGATIVE_INFINITY, "-Infinity is not JSON (NaN and Infinity are not JSON)"],
  ["a class instance", () => new Point(1, 2), "a value of type 'Point' is not JSON-serializable"],
  ["a cycle", cyclic, "a circular reference is not JSON (at .self)"],
  ["a lone surrogate", () => "ab\ud800", "a string holds a lone surrogate, which is not valid Unicode"],
  ["a Map deep inside", () => ({ user: { tags: [1, new Map()] } }), "a value of type 'Map' is not JSON-serializable (at .user.tags[1])"],
  ["NaN under an odd key", () => ({ "total-price": Number.NaN }), 'NaN is not JSON (NaN and Infinity are not JSON) (at ["total-price"])'],
  ["a function in an object", () => ({ ok: true, later: () => 1 }), "a value of type 'function' is not JSON-serializable (at .later)"],
  ["an Error", () => new Error("x"), "a value of type 'Error' is not JSON-serializable"],
  ["a typed array", () => new Uint8Array(2), "a value of type 'Uint8Array' is not JSON-serializable"],
];

function app(): Tether {
  return new Tether({ appId: "shop", address: "localhost:1", logger: silent });
}

describe("step results JSON would change are refused", () => {
  for (const [label, make, problem] of refused) {
    it(`${label}, in the harness: StepError naming the step and the type, not retried`, async () => {
      let calls = 0;
      const fn = app().createFunction({ id: "flow", retries: 4 }, async ({ step }) => {
        await step.run("load", () => {
          calls += 1;
          return make();
        });
      });
      const result = await runFunction(fn);
      assert.ok(result.error instanceof StepError);
      assert.equal(result.error.stepId, "load");
      assert.equal(result.error.errorName, "NonRetriableError");
      assert.equal(result.error.errorMessage, `step 'load' returned a value that is not JSON-serializable: ${problem} ${STEP_RESULTS}`);
      assert.equal(calls, 1);
      assert.equal(result.step("load").attempts, 1);
    });
  }

  for (const [label, make, problem] of refused.slice(0, 4)) {
    it(`${label}, on a worker: a StepFailed that is not retriable, then a suspension`, async () => {
      const fn = app().createFunction({ id: "flow" }, async ({ step }) => {
        await step.run("load", make);
        return "unreachable";
      });
      const outcomes = await runExecution(fn);
      assert.deepEqual(kinds(outcomes), ["stepFailed", "suspended"]);
      const failed = outcomes[0]?.kind;
      assert.equal(failed?.$case, "stepFailed");
      assert.equal(failed.value.name, "load");
      assert.equal(failed.value.retriable, false);
      assert.equal(failed.value.error?.name, "NonRetriableError");
      assert.equal(
        failed.value.error.message,
        `step 'load' returned a value that is not JSON-serializable: ${problem} ${STEP_RESULTS}`,
      );
      const suspended = outcomes[1]?.kind;
      assert.equal(suspended?.$case, "suspended");
      assert.deepEqual(suspended.value.waits, []);
    });
  }

  it(
    "a lone surrogate in an object key",
    () => {
      assert.throws(() => encodeJson({ "\udc00": 1 }), NotSerializableError);
    },
  );
});

describe("what JSON does change, as every replay would see it", () => {
  it("a Date becomes its ISO string, in the output sent and in the value returned", async () => {
    const fn = app().createFunction({ id: "flow" }, async ({ step }) => {
      const at = await step.run("now", () => new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 6)));
      return { type: typeof at, at };
    });
    const outcomes = await runExecution(fn);
    assert.deepEqual(kinds(outcomes), ["stepCompleted", "runCompleted"]);
    const completed = outcomes[0]?.kind;
    assert.equal(completed?.$case, "stepCompleted");
    assert.equal(completed.value.output.toString("utf8"), '"2024-01-02T03:04:05.006Z"');
    const run = outcomes[1]?.kind;
    assert.equal(run?.$case, "runCompleted");
    assert.deepEqual(decodeJson(run.value.output), { type: "string", at: "2024-01-02T03:04:05.006Z" });
  });

  it("undefined becomes null; inside an object it is left out, inside an array it is null", async () => {
    const fn = app().createFunction({ id: "flow" }, async ({ step }) => {
      const nothing = await step.run("nothing", () => undefined);
      const nested = await step.run("nested", () => ({ a: undefined, b: [undefined, 1] }));
      return { nothing, nested };
    });
    const outcomes = await runExecution(fn);
    const outputs = outcomes.map((o) =>
      o.kind?.$case === "stepCompleted" || o.kind?.$case === "runCompleted" ? o.kind.value.output.toString("utf8") : "",
    );
    assert.deepEqual(outputs, ["null", '{"b":[null,1]}', '{"nothing":null,"nested":{"b":[null,1]}}']);
  });

  it("a value with toJSON is what toJSON returns", async () => {
    const result = await runFunction(
      app().createFunction({ id: "flow" }, ({ step }) => step.run("price", () => ({ price: new Money(1250) }))),
    );
    assert.equal(result.error, undefined);
    assert.deepEqual(result.output, { price: "12.5 EUR" });
  });

  it("the function gets the round trip, not the object its step returned", async () => {
    const original = { when: new Date(0), list: [1, 2] };
    const result = await runFunction(
      app().createFunction({ id: "flow" }, async ({ step }) => {
        const value = await step.run("load", () => original);
        return { same: (value as unknown) === original, value };
      }),
    );
    assert.deepEqual(result.output, { same: false, value: { when: "1970-01-01T00:00:00.000Z", list: [1, 2] } });
  });

  it("an object referenced twice without a cycle is fine", async () => {
    const shared = { id: 1 };
    const result = await runFunction(
      app().createFunction({ id: "flow" }, ({ step }) => step.run("pair", () => ({ left: shared, right: [shared, shared] }))),
    );
    assert.equal(result.error, undefined);
    assert.deepEqual(result.output, { left: { id: 1 }, right: [{ id: 1 }, { id: 1 }] });
  });

  it("objects without a prototype, non-ASCII text and surrogate pairs are fine", () => {
    const bare = Object.assign(Object.create(null) as object, { city: "Zürich" });
    assert.equal(encodeJson({ bare, mood: "☀", emoji: "😀" }).toString("utf8"), '{"bare":{"city":"Zürich"},"mood":"☀","emoji":"😀"}');
  });
});

describe("a function's return value", () => {
  it("that JSON would change fails the run, not retriable, naming the function and the type", async () => {
    const fn = app().createFunction({ id: "flow" }, () => new Set([1]));
    const outcomes = await runExecution(fn);
    assert.deepEqual(kinds(outcomes), ["runFailed"]);
    const failed = outcomes[0]?.kind;
    assert.equal(failed?.$case, "runFailed");
    assert.equal(failed.value.retriable, false);
    assert.equal(failed.value.error?.name, "NonRetriableError");
    assert.equal(
      failed.value.error.message,
      "function 'flow' returned a value that is not JSON-serializable: a value of type 'Set' is not JSON-serializable " +
        "(return objects, arrays, strings, numbers, booleans or null)",
    );
  });

  it("undefined completes the run with null", async () => {
    const outcomes = await runExecution(app().createFunction({ id: "flow" }, () => undefined));
    const completed = outcomes[0]?.kind;
    assert.equal(completed?.$case, "runCompleted");
    assert.equal(completed.value.output.toString("utf8"), "null");
  });
});

describe("NotSerializableError", () => {
  it("is a TypeError naming the type found and where", () => {
    try {
      encodeJson({ items: [{ id: 5n }] });
      assert.fail("encodeJson accepted a bigint");
    } catch (error) {
      assert.ok(error instanceof NotSerializableError);
      assert.ok(error instanceof TypeError);
      assert.equal(error.name, "NotSerializableError");
      assert.equal(error.found, "bigint");
      assert.equal(error.path, ".items[0].id");
      assert.equal(error.message, "a value of type 'bigint' is not JSON-serializable (at .items[0].id)");
    }
  });
});
