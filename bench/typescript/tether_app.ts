// The benchmark's steps workload (bench-flow of bench/tether_app.py) served by
// a TypeScript worker: `data.steps` trivial steps in a row. Run by
// bench/tether_workload.py with TETHER_ADDRESS and TETHER_BENCH_CAPACITY set.

import { Tether } from "@tether/sdk";

const tether = new Tether({ appId: "tether-bench" });

/** What each step does: nothing but return a small JSON value. */
function trivialStep(index: number): { i: number } {
  return { i: index };
}

tether.createFunction({ id: "bench-flow", event: "bench/run.requested", retries: 0 }, async ({ event, step }) => {
  const steps = event.data.steps as number;
  let total = 0;
  for (let index = 0; index < steps; index += 1) {
    const result = await step.run(`step-${index}`, trivialStep, index);
    total += result.i;
  }
  return { steps, total };
});

await tether.serve({ capacity: Number(process.env.TETHER_BENCH_CAPACITY ?? "100") });
