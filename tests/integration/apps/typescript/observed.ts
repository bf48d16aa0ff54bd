// The tracing test's functions (the same as ../observed.py), in a TypeScript worker.

import { Tether } from "@tether/sdk";

const tether = new Tether({ appId: "observed" });

class ConnectionError extends Error {
  override name = "ConnectionError";
}

// Runs whose "flaky" step already failed once (one worker process per test).
const failedOnce = new Set<string>();

const tracedChild = tether.createFunction({ id: "traced-child", event: "observed/child" }, async ({ event, step }) =>
  step.run("double", () => (event.data.n as number) * 2),
);

tether.createFunction({ id: "traced-flow", event: "observed/go", retries: 2 }, async ({ step, runId }) => {
  const first = await step.run("first", () => 1);
  const second = await step.run("flaky", () => {
    if (!failedOnce.has(runId)) {
      failedOnce.add(runId);
      throw new ConnectionError("first attempt fails");
    }
    return 2;
  });
  await step.sleep("nap", "1h");
  const approval = await step.waitForEvent("approval", { event: "observed/approved", timeout: "2h" });
  const child = await step.invoke("child", { function: tracedChild, data: { n: 5 } });
  return { sum: first + second + child, approved: approval !== null };
});

await tether.serve();
