"""The workload of the chaos suite: five steps of 0.2 s each, every start and
end written to the ledger (tests.support.ledger) as
``run id, step, start|end, worker, wall-clock ms``, so that the suite can count
what really ran and when."""

from __future__ import annotations

import os
import time

from tests.support import ledger
from tether import Context, Tether

app = Tether(app_id="chaos")
STEPS = 5
STEP_SECONDS = 0.2


@app.function(id="five-steps", trigger="chaos/go")
async def five_steps(ctx: Context) -> int:
    worker = os.environ.get("TETHER_TEST_WORKER", "worker")

    def step(i: int) -> int:
        ledger.record(ctx.run_id, i, "start", worker, time.time_ns() // 1_000_000)
        time.sleep(STEP_SECONDS)
        ledger.record(ctx.run_id, i, "end", worker, time.time_ns() // 1_000_000)
        return i

    total = 0
    for i in range(STEPS):
        total += await ctx.step.run(f"step-{i}", step, i)
    return total
