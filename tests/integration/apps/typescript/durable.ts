// A TypeScript worker for the durability tests of test_typescript_worker.py.
// Steps append `<run id>\t<label>\t<worker name>` to TETHER_TEST_LEDGER;
// TETHER_TEST_WORKER names the worker; TETHER_TEST_BAD_IF registers a function
// with that (invalid) trigger condition.

import { appendFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

import { Tether } from "@tether/sdk";

const tether = new Tether({ appId: "durable-ts" });
const workerName = process.env.TETHER_TEST_WORKER ?? "worker";

function record(runId: string, label: string): void {
  appendFileSync(process.env.TETHER_TEST_LEDGER ?? "ledger.tsv", `${runId}\t${label}\t${workerName}\n`);
}

tether.createFunction({ id: "slow-step", event: "test-ts/slow-step" }, async ({ event, step, runId }) =>
  step.run("slow", async () => {
    record(runId, "slow-start");
    await sleep((event.data.seconds as number) * 1000);
    record(runId, "slow");
    return workerName;
  }),
);

const badCondition = process.env.TETHER_TEST_BAD_IF;
if (badCondition !== undefined) {
  tether.createFunction({ id: "badly-declared", event: "test-ts/bad", if: badCondition }, () => null);
}

await tether.serve();
