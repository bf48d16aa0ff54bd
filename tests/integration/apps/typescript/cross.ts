// The TypeScript half of the cross-language tests (test_cross_language.py); the
// Python half is ../cross.py (app "py-app").

import { Tether } from "@tether/sdk";

type Events = {
  "cross/ts-invokes-py": { data: { n: number } };
  "cross/ts-say": { data: { key: string; words: string } };
  "cross/ts-said": { data: { key: string; words: string } };
  "cross/every-option": { data: { go: boolean; account: string; request_id: string; vip: boolean } };
  "cross/every-option.stop": { data: { account: string } };
  "cross/batched": { data: { account: string } };
};

const tether = new Tether<Events>({ appId: "ts-app" });

tether.createFunction({ id: "ts-double" }, ({ event }) => ({
  doubled: (event.data.n as number) * 2,
  sdk: "typescript",
}));

tether.createFunction({ id: "ts-invokes-py", event: "cross/ts-invokes-py" }, async ({ event, step }) => {
  const child = await step.invoke("ask-python", { function: "py-app/py-double", data: { n: event.data.n } });
  return { from_python: child };
});

tether.createFunction({ id: "ts-says", event: "cross/ts-say" }, async ({ event, step }) => {
  await step.sendEvent("say", { name: "cross/ts-said", data: { key: event.data.key, words: event.data.words } });
});

// The same options as "every-option" in ../cross.py, in TypeScript's idiom.
tether.createFunction(
  {
    id: "every-option",
    triggers: [
      { event: "cross/every-option", if: "event.data.go == true" },
      { cron: "30 8 * * 1-5", tz: "America/New_York", catchUp: "all" },
    ],
    retries: 7,
    concurrency: [{ limit: 2, key: "event.data.account" }, 10],
    throttle: { limit: 5, period: "1m", burst: 2, key: "event.data.account" },
    rateLimit: { limit: 100, period: "1h" },
    debounce: { period: "5s", key: "event.data.account", timeout: "1m" },
    priority: { run: "event.data.vip ? 60 : 0" },
    singleton: { key: "event.data.account", mode: "cancel" },
    idempotency: "event.data.request_id",
    cancelOn: [{ event: "cross/every-option.stop", match: "data.account", timeout: "2h" }],
    timeouts: { start: "10m", finish: "1d" },
  },
  () => null,
);

tether.createFunction(
  {
    id: "batched",
    event: "cross/batched",
    batchEvents: { maxSize: 50, timeout: "30s", key: "event.data.account" },
    concurrency: { limit: 3, key: "event.data.account", scope: "app" },
  },
  () => null,
);

await tether.serve();
