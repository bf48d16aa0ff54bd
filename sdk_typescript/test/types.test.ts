// Type-level checks: `tsc --noEmit` over test/ compiles this file, so what must
// compile is written plainly and what must not carries `@ts-expect-error`
// (which fails the build if the line does compile). The functions also run
// through the harness, so the types describe what really arrives.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { Tether, type Jsonify, type TetherEvent } from "../src/index.js";
import { runFunction } from "../src/testing/index.js";
import { silent } from "./support.js";

/** True when A and B are the same type (not merely assignable to each other). */
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- the standard exact-equality trick
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;

/** Compiles only when its argument is `true`. */
function expectTrue(value: true): void {
  assert.equal(value, true);
}

type Events = {
  "app/user.signup": { data: { user_id: number; email: string } };
  "app/order.placed": { data: { order_id: string; total: number } };
  "app/order.approved": { data: { order_id: string; approver: string } };
};

function typedApp(): Tether<Events> {
  return new Tether<Events>({ appId: "shop", address: "localhost:1", logger: silent });
}

describe("typed events", () => {
  it("a handler triggered by an event sees its data's types", async () => {
    const tether = typedApp();
    const welcome = tether.createFunction({ id: "welcome", event: "app/user.signup" }, ({ event }) => {
      const email: string = event.data.email;
      const userId: number = event.data.user_id;
      expectTrue(true satisfies Equal<typeof event.data, { user_id: number; email: string }>);
      expectTrue(true satisfies Equal<typeof event.name, "app/user.signup">);
      // @ts-expect-error: the signup event has no `name` field
      const missing: unknown = event.data.name;
      assert.equal(missing, undefined);
      return `${email} (${userId})`;
    });
    const result = await runFunction(welcome, { event: { name: "app/user.signup", data: { user_id: 1, email: "ada@example.com" } } });
    assert.equal(result.output, "ada@example.com (1)");
  });

  it("an unknown event name does not compile in a typed app", () => {
    const tether = typedApp();
    // @ts-expect-error: "app/user.deleted" is not one of the app's events
    tether.createFunction({ id: "goodbye", event: "app/user.deleted" }, () => null);
    // Wildcards and the control plane's own events are allowed.
    tether.createFunction({ id: "orders", event: "app/order.*" }, ({ event }) => {
      expectTrue(true satisfies Equal<typeof event.name, "app/order.placed" | "app/order.approved">);
      return event.data.order_id;
    });
    tether.createFunction({ id: "failures", event: "tether/function.failed" }, () => null);
    assert.equal(tether.registeredFunctions.length, 3);
  });

  it("a wait for an event is typed by its name, and may be null", async () => {
    const tether = typedApp();
    const fn = tether.createFunction({ id: "approval", event: "app/order.placed" }, async ({ event, step }) => {
      const approval = await step.waitForEvent("wait-approval", {
        event: "app/order.approved",
        timeout: "1d",
        match: "data.order_id",
      });
      expectTrue(true satisfies Equal<typeof approval, TetherEvent<"app/order.approved", { order_id: string; approver: string }> | null>);
      // @ts-expect-error: "app/order.shipped" is not one of the app's events
      await step.waitForEvent("wait-shipping", { event: "app/order.shipped", timeout: "1d" });
      return approval === null ? `${event.data.order_id} timed out` : approval.data.approver;
    });
    const result = await runFunction(fn, { event: { name: "app/order.placed", data: { order_id: "A-1", total: 5 } } });
    assert.equal(result.output, "A-1 timed out");
  });

  it("sending an unknown event does not compile in a typed app", async () => {
    const tether = typedApp();
    const fn = tether.createFunction({ id: "signup" }, async ({ step }) => {
      await step.sendEvent("welcome", { name: "app/user.signup", data: { user_id: 1, email: "a@b.c" } });
      // @ts-expect-error: "app/user.gone" is not one of the app's events
      await step.sendEvent("gone", { name: "app/user.gone", data: {} });
      // @ts-expect-error: the signup event's user_id is a number
      await step.sendEvent("bad", { name: "app/user.signup", data: { user_id: "1", email: "a@b.c" } });
    });
    const result = await runFunction(fn);
    assert.equal(result.sentEvents.length, 3);
  });

  it("an untyped app takes any event name and any data", () => {
    const tether = new Tether({ appId: "shop", address: "localhost:1", logger: silent });
    const fn = tether.createFunction({ id: "anything", event: "whatever/happened" }, ({ event }) => {
      expectTrue(true satisfies Equal<typeof event.name, "whatever/happened">);
      return event.data.anything as unknown;
    });
    assert.equal(fn.id, "anything");
  });
});

describe("what steps return", () => {
  it("step.run returns the JSON round trip of its result", async () => {
    const tether = typedApp();
    const fn = tether.createFunction({ id: "stamp" }, async ({ step }) => {
      const stamped = await step.run("stamp", () => ({ at: new Date(0), n: 1 }));
      expectTrue(true satisfies Equal<typeof stamped, { at: string; n: number }>);
      const nothing = await step.run("nothing", () => undefined);
      expectTrue(true satisfies Equal<typeof nothing, null>);
      assert.equal(nothing, null);
      const awaited = await step.run("async", () => Promise.resolve([new Date(0)]));
      expectTrue(true satisfies Equal<typeof awaited, string[]>);
      assert.deepEqual(awaited, ["1970-01-01T00:00:00.000Z"]);
      const summed = await step.run("add", (a: number, b: number) => a + b, 1, 2);
      expectTrue(true satisfies Equal<typeof summed, number>);
      // @ts-expect-error: the arguments must match the function's parameters
      await step.run("add-wrong", (a: number, b: number) => a + b, 1, "2");
      // @ts-expect-error: a Date became a string on its way through JSON
      const at: Date = stamped.at;
      assert.equal(typeof at, "string");
      return [stamped.at.slice(0, 4), summed];
    });
    assert.deepEqual((await runFunction(fn)).output, ["1970", 3]);
  });

  it("Jsonify drops what JSON drops", () => {
    expectTrue(true satisfies Equal<Jsonify<{ a: Date; b?: number; c: () => void; d: undefined[] }>, { a: string; b?: number; d: null[] }>);
  });

  it("step.invoke returns the invoked function's output type", async () => {
    const tether = typedApp();
    const price = tether.createFunction({ id: "price" }, () => ({ total: 3, at: new Date(0) }));
    const checkout = tether.createFunction({ id: "checkout" }, async ({ step }) => {
      const quote = await step.invoke("get-price", { function: price, data: { qty: 1 } });
      expectTrue(true satisfies Equal<typeof quote, { total: number; at: string }>);
      const untyped = await step.invoke("by-id", { function: "billing/price" });
      expectTrue(true satisfies Equal<typeof untyped, unknown>);
      assert.equal(untyped, null);
      // @ts-expect-error: price's output has no `currency`
      const currency: unknown = quote.currency;
      assert.equal(currency, undefined);
      return quote.total;
    });
    const result = await runFunction(checkout, { steps: { "by-id": null } });
    assert.equal(result.output, 3);
  });
});
