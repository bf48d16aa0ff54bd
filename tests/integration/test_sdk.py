"""The SDK against a real control plane: sending, administering runs, bad input,
non-determinism and replay-aware logging (TestEnvironment, virtual clock)."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.support.waiting import wait_until_async
from tether import (
    Context,
    FailedPreconditionError,
    InvalidArgumentError,
    LimitExceededError,
    NotFoundError,
    RunStatus,
    StepError,
    Tether,
)
from tether._worker import Worker
from tether.testing import TestEnvironment

app = Tether(app_id="sdk-tests")
ran: list[tuple[str, str]] = []
# Which version of `evolving` is deployed; tests flip it between executions.
deployed = {"version": 1}
gates: dict[str, asyncio.Event] = {}


@app.function(id="greet", trigger="sdk/greet")
async def greet(ctx: Context) -> str:
    name = await ctx.step.run("name", lambda: ctx.event.data.get("name", "you"))
    return f"hello {name}"


@app.function(id="sleepy", trigger="sdk/sleepy")
async def sleepy(ctx: Context) -> str:
    ran.append((ctx.run_id, "before"))
    await ctx.step.run("before", lambda: "x")
    await ctx.step.sleep("nap", "1h")
    await ctx.step.run("after", lambda: ran.append((ctx.run_id, "after")))
    return "rested"


@app.function(id="held", trigger="sdk/held")
async def held(ctx: Context) -> str:
    async def wait_for_gate() -> str:
        ran.append((ctx.run_id, "held-start"))
        try:
            await gates[ctx.event.data["gate"]].wait()
        except asyncio.CancelledError:
            ran.append((ctx.run_id, "held-stopped"))
            raise
        return "released"

    await ctx.step.run("hold", wait_for_gate)
    await ctx.step.run("next", lambda: ran.append((ctx.run_id, "next")))
    return "done"


@app.function(id="fails-then-fixed", trigger="sdk/fix", retries=0)
async def fails_then_fixed(ctx: Context) -> str:
    await ctx.step.run("prepare", lambda: ran.append((ctx.run_id, "prepare")))

    def risky() -> str:
        ran.append((ctx.run_id, "risky"))
        if deployed["version"] == 1:
            raise ValueError("bug in version 1")
        return "fixed"

    return await ctx.step.run("risky", risky)


@app.function(id="not-json", trigger="sdk/not-json")
async def not_json(ctx: Context) -> str:
    try:
        await ctx.step.run("now", lambda: dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    except StepError as error:
        return error.error_message
    return "unreachable"


@app.function(id="evolving", trigger="sdk/evolving")
async def evolving(ctx: Context) -> str:
    if deployed["version"] == 1:
        await ctx.step.run("old-step", lambda: "v1")
    await ctx.step.sleep("pause", "1h")
    await ctx.step.run("new-step", lambda: "v2")
    return "done"


@app.function(id="chatty", trigger="sdk/chatty")
async def chatty(ctx: Context) -> None:
    ctx.logger.info("starting run %s", ctx.run_id)
    await ctx.step.run("first", lambda: 1)
    await ctx.step.sleep("pause", "10m")
    ctx.logger.info("after the pause")


@app.function(id="fan-out", trigger="sdk/fan-out")
async def fan_out(ctx: Context) -> dict[str, str]:
    """Branches that reuse step ids and finish in the opposite order they started."""

    async def fetch(item: str, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return f"fetched {item}"

    async def process(item: str, seconds: float) -> str:
        await ctx.step.run("fetch", fetch, item, seconds)
        return await ctx.step.run("save", lambda: f"saved {item}")

    slow, fast = await asyncio.gather(process("slow", 0.05), process("fast", 0.0))
    await ctx.step.sleep("pause", "1h")  # the run replays after this
    return {"slow": slow, "fast": fast}


@app.function(id="impatient", trigger="sdk/impatient")
async def impatient(ctx: Context) -> str | None:
    async def slow_api() -> str:
        await asyncio.sleep(30)
        return "late"

    try:
        result: str | None = await asyncio.wait_for(ctx.step.run("enrich", slow_api), 0.05)
    except TimeoutError:
        result = None
    await ctx.step.sleep("pause", "1h")
    return result


@app.function(id="backoff-and-naps", trigger="sdk/backoff-and-naps", retries=2)
async def backoff_and_naps(ctx: Context) -> str:
    """A failing step next to a branch that wakes the run every second."""

    def flaky() -> str:
        ran.append((ctx.run_id, "flaky"))
        raise ConnectionError("still down")

    async def naps() -> None:
        for i in range(5):
            await ctx.step.sleep(f"nap-{i}", "1s")

    await asyncio.gather(ctx.step.run("flaky", flaky), naps(), return_exceptions=True)
    return "done"


@app.function(id="cancels-itself", trigger="sdk/cancels-itself", retries=1)
async def cancels_itself(ctx: Context) -> None:
    await ctx.step.run("first", lambda: 1)
    raise asyncio.CancelledError  # a library cancelling what the function awaits


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env() -> AsyncIterator[TestEnvironment]:
    async with TestEnvironment(app) as environment:
        yield environment


pytestmark = pytest.mark.asyncio(loop_scope="module")


async def _run_id(name: str, data: dict[str, Any] | None = None) -> str:
    [result] = await app.send({"name": name, "data": data or {}})
    [run_id] = result.run_ids
    return run_id


async def test_send_returns_event_and_run_ids(env: TestEnvironment) -> None:
    [result] = await app.send({"name": "sdk/greet", "data": {"name": "Ada"}, "id": "greet-ada"})

    assert result.event_id == "greet-ada"
    assert not result.duplicate
    run = await app.runs.wait(result.run_ids[0], timeout=10)
    assert run.status is RunStatus.COMPLETED
    assert run.output == "hello Ada"
    assert run.events[0].data == {"name": "Ada"}
    assert run.steps[0].id == "name"

    [again] = await app.send({"name": "sdk/greet", "data": {"name": "Ada"}, "id": "greet-ada"})
    assert again.duplicate
    assert again.run_ids == []


async def test_send_sync_works_in_code_without_an_event_loop(env: TestEnvironment) -> None:
    [result] = await asyncio.to_thread(app.send_sync, {"name": "sdk/greet", "data": {}})
    assert len(result.run_ids) == 1


async def test_runs_list_filters_and_pages(env: TestEnvironment) -> None:
    run_ids = [await _run_id("sdk/greet", {"name": str(i)}) for i in range(5)]
    for run_id in run_ids:
        await app.runs.wait(run_id, timeout=10)

    first = await app.runs.list(function_id="greet", status="completed", limit=3)
    second = await app.runs.list(
        function_id="greet", status="completed", limit=3, page_token=first.next_page_token
    )

    assert len(first.runs) == 3
    assert first.next_page_token
    listed = [r.id for r in first.runs + second.runs]
    assert len(listed) == len(set(listed)), "pages overlap"
    assert set(run_ids) <= set(listed) | {r.id for r in (await app.runs.list(limit=1000)).runs}
    created = [r.created_at for r in first.runs + second.runs]
    assert created == sorted(created, reverse=True), "newest first"
    assert all(r.function_id == "greet" for r in first.runs + second.runs)
    none_sleeping = await app.runs.list(function_id="greet", status=["sleeping", "waiting"])
    assert none_sleeping.runs == []


async def test_cancel_a_sleeping_run(env: TestEnvironment) -> None:
    async with env.hold_clock():
        run_id = await _run_id("sdk/sleepy")
        sleeping = await app.runs.wait(run_id, until="sleeping", timeout=20)
        assert sleeping.status is RunStatus.SLEEPING  # the clock is held: it stays so

        cancelled = await app.runs.cancel(run_id, reason="customer left")
        await env.advance("2h")
        run = await app.runs.wait(run_id, timeout=10)

    assert cancelled.status is RunStatus.CANCELLED
    assert run.status is RunStatus.CANCELLED
    assert run.error is not None
    assert run.error.message == "customer left"
    assert (run_id, "after") not in ran, "a step ran after the run was cancelled"
    with pytest.raises(FailedPreconditionError, match="already finished"):
        await app.runs.cancel(run_id)


async def test_cancel_a_run_while_its_step_runs(env: TestEnvironment) -> None:
    gates["cancel"] = asyncio.Event()
    run_id = await _run_id("sdk/held", {"gate": "cancel"})
    await wait_until_async(lambda: _ran(run_id, "held-start"), what="the step to start")

    await app.runs.cancel(run_id)
    # cancel returns once the worker confirmed: nothing of the run starts now.
    assert env.worker is not None
    assert run_id not in env.worker.executing
    gates["cancel"].set()  # the running step finishes after the cancellation

    async def hold_recorded() -> bool:
        return [s.id for s in (await app.runs.get(run_id)).steps] == ["hold"]

    await wait_until_async(hold_recorded, what="the running step's result to be recorded")
    run = await app.runs.get(run_id)
    assert run.status is RunStatus.CANCELLED
    assert run.steps[0].output == "released"
    assert not await _ran(run_id, "held-stopped"), "the running step was interrupted"
    assert not await _ran(run_id, "next"), "a step started after cancellation"


async def test_replay_from_the_failed_step_keeps_what_completed(env: TestEnvironment) -> None:
    deployed["version"] = 1
    run_id = await _run_id("sdk/fix")
    failed = await app.runs.wait(run_id, timeout=10)
    assert failed.status is RunStatus.FAILED
    assert failed.error is not None
    assert "bug in version 1" in failed.error.message

    deployed["version"] = 2
    replay = await app.runs.replay(run_id, from_failed_step=True)
    fixed = await app.runs.wait(replay.id, timeout=10)

    assert fixed.status is RunStatus.COMPLETED
    assert fixed.output == "fixed"
    assert fixed.replay_of == run_id
    assert ran.count((replay.id, "prepare")) == 0, "a kept step ran again"
    assert ran.count((replay.id, "risky")) == 1
    assert [s.id for s in fixed.steps] == ["prepare", "risky"]

    from_start = await app.runs.wait((await app.runs.replay(run_id)).id, timeout=10)
    assert ran.count((from_start.id, "prepare")) == 1


async def test_unknown_run_ids_are_not_found(env: TestEnvironment) -> None:
    for call in (app.runs.get, app.runs.cancel, app.runs.wait, app.runs.replay):
        with pytest.raises(NotFoundError, match="run 'no-such-run' not found"):
            await call("no-such-run")


async def test_wait_times_out_with_the_state_it_saw(env: TestEnvironment) -> None:
    async with env.hold_clock():
        run_id = await _run_id("sdk/sleepy")
        with pytest.raises(TimeoutError, match=r"did not finish within 0\.3 s \(still sleeping\)"):
            await app.runs.wait(run_id, timeout=0.3)
        with pytest.raises(TimeoutError, match=r"did not become waiting within 0\.3 s"):
            await app.runs.wait(run_id, until=RunStatus.WAITING, timeout=0.3)
    assert (await app.runs.wait(run_id, timeout=10)).status is RunStatus.COMPLETED


async def test_bad_events_are_refused_and_nothing_is_stored(env: TestEnvironment) -> None:
    with pytest.raises(
        InvalidArgumentError, match=r"data must be a dict \(a JSON object\), not list"
    ):
        await app.send({"name": "sdk/greet", "data": [1, 2]})
    with pytest.raises(InvalidArgumentError, match="contains whitespace"):
        await app.send({"name": "sdk greet", "data": {}})
    with pytest.raises(InvalidArgumentError, match="reserved"):
        await app.send({"name": "tether/function.failed", "data": {}})
    with pytest.raises(
        LimitExceededError, match=r"event 1 \('sdk/greet'\) is .* the limit is 512 KiB"
    ):
        await app.send(
            [
                {"name": "sdk/greet", "data": {"name": "fine"}, "id": "batch-ok"},
                {"name": "sdk/greet", "data": {"blob": "x" * 600_000}},
            ]
        )
    # The batch was refused as a whole: its valid event was not stored either.
    [retry] = await app.send({"name": "sdk/greet", "data": {"name": "fine"}, "id": "batch-ok"})
    assert not retry.duplicate


async def test_a_non_json_step_result_names_the_step_and_the_type(env: TestEnvironment) -> None:
    run = await app.runs.wait(await _run_id("sdk/not-json"), timeout=10)

    assert run.status is RunStatus.COMPLETED
    assert "step 'now' returned a value that is not JSON-serializable" in run.output
    assert "'datetime'" in run.output
    [step] = run.steps
    assert step.status == "failed"
    assert step.attempts == 1, "an output no retry can fix was retried"


async def test_changed_code_is_reported_as_non_determinism(env: TestEnvironment) -> None:
    deployed["version"] = 1
    async with env.hold_clock():
        run_id = await _run_id("sdk/evolving")
        await app.runs.wait(run_id, until=RunStatus.SLEEPING, timeout=20)
        deployed["version"] = 2  # a new deployment drops "old-step"
        await env.advance("1h")
        run = await app.runs.wait(run_id, timeout=10)

    assert run.status is RunStatus.COMPLETED
    [entry] = [h for h in run.history if h.kind == "non_determinism"]
    assert "1 memoized step(s) were never reached" in entry.message
    assert "'new-step'" in entry.message


async def test_the_run_logger_is_silent_while_replaying(
    env: TestEnvironment, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tether.functions.chatty")

    run_id = await _run_id("sdk/chatty")
    run = await app.runs.wait(run_id, timeout=10)

    assert run.status is RunStatus.COMPLETED
    assert len([h for h in run.history if h.kind == "execution.started"]) == 2
    messages = [r.getMessage() for r in caplog.records if r.name == "tether.functions.chatty"]
    assert messages == [f"starting run {run_id}", "after the pause"]
    assert all(
        getattr(r, "run_id", None) == run_id
        for r in caplog.records
        if r.name.startswith("tether.functions")
    )


async def _ran(run_id: str, what: str) -> bool:
    return (run_id, what) in ran


async def test_parallel_branches_keep_their_own_results_on_replay(env: TestEnvironment) -> None:
    run = await app.runs.wait(await _run_id("sdk/fan-out"), timeout=10)

    assert run.status is RunStatus.COMPLETED
    assert run.output == {"slow": "saved slow", "fast": "saved fast"}


async def test_a_step_abandoned_by_a_timeout_does_not_hang_the_run(env: TestEnvironment) -> None:
    run = await app.runs.wait(await _run_id("sdk/impatient"), timeout=10)

    assert run.status is RunStatus.COMPLETED
    assert run.output is None


async def test_retries_wait_out_their_backoff_when_the_run_wakes_earlier(
    env: TestEnvironment,
) -> None:
    run_id = await _run_id("sdk/backoff-and-naps")

    run = await app.runs.wait(run_id, timeout=10)

    assert run.status is RunStatus.COMPLETED
    failures = [h for h in run.history if h.kind == "step.failed"]
    assert [f.attempt for f in failures] == [1, 2, 3]
    for earlier, later in itertools.pairwise(failures):
        assert earlier.until is not None
        assert later.at >= earlier.until, "a step was retried before its backoff"
    assert ran.count((run_id, "flaky")) == 3


async def test_a_function_that_cancels_itself_fails_instead_of_looping(
    env: TestEnvironment,
) -> None:
    run = await app.runs.wait(await _run_id("sdk/cancels-itself"), timeout=10)

    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert "cancelled by its own code" in run.error.message
    assert run.attempt == 2


# -- how the worker reports a stream the control plane ended -------------------------------

quiet = Tether(app_id="sdk-quiet")


@quiet.function(id="quiet-greet", trigger="sdk/quiet-greet")
async def quiet_greet(ctx: Context) -> str:
    return await ctx.step.run("name", lambda: "quiet")


SHORT_LEASES = ["--heartbeat-ms", "200", "--lease-timeout-ms", "1000"]


def _lost(caplog: pytest.LogCaptureFixture, status: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "tether.worker" and f"the stream ended with status {status}: " in r.message
    ]


async def test_a_worker_closed_for_its_silence_logs_why_and_reconnects(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def no_heartbeats(self: Worker, interval_s: float) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(Worker, "_heartbeat", no_heartbeats)
    caplog.set_level(logging.INFO, logger="tether.worker")
    async with TestEnvironment(quiet, server_args=SHORT_LEASES) as environment:
        worker = environment.worker
        assert worker is not None

        async def reconnected() -> bool:
            connects = [r for r in caplog.records if r.message.startswith("connected to")]
            return bool(_lost(caplog, "UNAVAILABLE")) and len(connects) >= 2

        await wait_until_async(reconnected, what="the worker to be closed and to reconnect")

        [record, *_] = _lost(caplog, "UNAVAILABLE")
        assert record.levelno == logging.WARNING
        assert "no word from the worker for " in record.message
        assert "the limit is the lease timeout, 1000 ms" in record.message
        await asyncio.wait_for(worker.connected.wait(), 10)


async def test_a_worker_that_breaks_the_protocol_logs_an_error_and_reconnects(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def number_badly(self: Worker, outcomes: list[Any]) -> None:
        for outcome in outcomes:
            outcome.seq = 1  # never increases: the second outcome breaks the protocol

    monkeypatch.setattr(Worker, "_number", number_badly)
    caplog.set_level(logging.INFO, logger="tether.worker")
    async with TestEnvironment(quiet, server_args=SHORT_LEASES):
        await quiet.send({"name": "sdk/quiet-greet"})

        await wait_until_async(
            lambda: asyncio.sleep(0, _lost(caplog, "INVALID_ARGUMENT")),
            what="the stream to end with INVALID_ARGUMENT",
        )

        [record, *_] = _lost(caplog, "INVALID_ARGUMENT")
        assert record.levelno == logging.ERROR
        assert (
            "outcome seq 1 does not increase: the previous outcome on this stream had seq 1"
            in record.message
        )
        assert "reconnecting in" in record.message
