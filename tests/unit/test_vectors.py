"""The shared test vectors (tests/vectors/sdk.json), read by every SDK's unit
tests: step ids, span ids, durations, JSON bytes, and whole executions whose
outcomes must match byte for byte."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tether import NonRetriableError, RetryAfterError, StepError
from tether._durations import to_milliseconds
from tether._execution import Execution
from tether._function import Function
from tether._json import dumps
from tether._step import Step
from tether._step_ids import StepIds, hash_step_id, step_span_id
from tether.v1 import common_pb2, worker_service_pb2

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "sdk.json").read_text(encoding="utf-8")
)
EXECUTE_DEFAULTS: dict[str, Any] = VECTORS["execute_defaults"]


@pytest.mark.parametrize("case", VECTORS["step_ids"], ids=lambda c: c["name"][:20])
def test_step_id_hash(case: dict[str, str]) -> None:
    assert hash_step_id(case["name"]) == case["hashed"]


@pytest.mark.parametrize("case", VECTORS["step_id_sequences"], ids=lambda c: ",".join(c["calls"]))
def test_step_id_sequence(case: dict[str, list[str]]) -> None:
    ids = StepIds()
    assert [ids.allocate(call) for call in case["calls"]] == case["names"]


@pytest.mark.parametrize("case", VECTORS["step_id_errors"], ids=lambda c: str(len(c["id"])))
def test_step_id_error(case: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(case['message'])}$"):
        StepIds().allocate(case["id"])


@pytest.mark.parametrize("case", VECTORS["step_span_ids"], ids=lambda c: c["span_id"])
def test_step_span_id(case: dict[str, Any]) -> None:
    span = step_span_id(case["run_id"], case["hashed"], case["attempt"])
    assert format(span, "016x") == case["span_id"]


@pytest.mark.parametrize("case", VECTORS["send_event_ids"], ids=lambda c: c["id"])
async def test_send_event_id(case: dict[str, Any]) -> None:
    outcomes = await run_execution(
        {"run_id": case["run_id"]},
        [{"send": case["step"], "events": [{"name": "app/x"}] * (case["index"] + 1)}],
    )
    completed = outcomes[0].step_completed
    assert json.loads(completed.output)[case["index"]] == case["id"]


@pytest.mark.parametrize(("text", "ms"), VECTORS["durations"]["valid"])
def test_duration(text: str, ms: int) -> None:
    assert to_milliseconds(text) == ms


@pytest.mark.parametrize(("text", "message"), VECTORS["durations"]["invalid"])
def test_invalid_duration(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        to_milliseconds(text)


@pytest.mark.parametrize("case", VECTORS["json"], ids=lambda c: c["bytes"][:20])
def test_json_bytes(case: dict[str, Any]) -> None:
    assert dumps(case["value"]) == case["bytes"].encode("utf-8")


@pytest.mark.parametrize("case", VECTORS["executions"], ids=lambda c: c["name"])
async def test_execution(case: dict[str, Any]) -> None:
    outcomes = await run_execution(case.get("execute", {}), case["code"])
    assert [o.SerializeToString().hex() for o in outcomes] == [o["hex"] for o in case["outcomes"]]


# -- running a vector's execution ---------------------------------------------------------


class Error(Exception):
    """The plain error of the vectors (`"throws": "Error"`)."""


def make_error(op: dict[str, Any]) -> Exception:
    name, message = op.get("throws") or op["throw"], op["message"]
    if name == "NonRetriableError":
        return NonRetriableError(message)
    if name == "RetryAfterError":
        return RetryAfterError(message, op["delay"])
    assert name == "Error", f"unknown error {name!r} in a vector"
    return Error(message)


async def interpret(ops: list[dict[str, Any]], step: Step) -> list[Any]:
    return [await perform(op, step) for op in ops]


async def perform(op: dict[str, Any], step: Step) -> Any:
    if "run" in op:
        if "throws" in op:

            async def fail() -> Any:
                raise make_error(op)

            return await step.run(op["run"], fail)

        async def give() -> Any:
            return op["returns"]

        return await step.run(op["run"], give)
    if "sleep" in op:
        await step.sleep(op["sleep"], op["duration"])
        return None
    if "wait" in op:
        event = await step.wait_for_event(
            op["wait"], event=op["event"], timeout=op["timeout"], match=op.get("match")
        )
        return None if event is None else {"id": event.id, "data": event.data}
    if "invoke" in op:
        return await step.invoke(op["invoke"], function=op["function"], data=op.get("data"))
    if "send" in op:
        return await step.send_event(op["send"], op["events"])
    if "parallel" in op:
        return list(await asyncio.gather(*(interpret(branch, step) for branch in op["parallel"])))
    if "catch" in op:
        try:
            return await interpret(op["catch"], step)
        except StepError as error:
            return {"caught": str(error)}
    if "throw" in op:
        raise make_error(op)
    raise AssertionError(f"unknown operation {op!r} in a vector")


def execute_message(fields: dict[str, Any]) -> worker_service_pb2.Execute:
    spec = {**EXECUTE_DEFAULTS, **fields}
    base = spec["server_time_ms"]
    execute = worker_service_pb2.Execute(
        execution_id=spec["execution_id"],
        run_id=spec["run_id"],
        function_id=spec["function_id"],
        attempt=spec["attempt"],
        server_time_ms=base,
        events=[
            common_pb2.Event(
                id=e.get("id", ""),
                name=e["name"],
                data=dumps(e.get("data", {})),
                ts_ms=e.get("ts_ms", 0),
            )
            for e in spec["events"]
        ],
    )
    for memo in spec["steps"]:
        step = execute.steps.add(step_id=hash_step_id(memo["name"]))
        if "error" in memo:
            step.error.CopyFrom(common_pb2.ErrorInfo(**memo["error"]))
        else:
            step.output = dumps(memo["output"])
    for name, attempt in spec["step_attempts"].items():
        execute.step_attempts[hash_step_id(name)] = attempt
    for name, offset in spec["step_not_before_ms"].items():
        execute.step_not_before_ms[hash_step_id(name)] = base + offset
    return execute


async def run_execution(
    fields: dict[str, Any], code: list[dict[str, Any]]
) -> list[worker_service_pb2.Outcome]:
    """The outcomes of running ``code`` on the vector's Execute, normalized."""
    execute = execute_message(fields)
    outcomes: list[worker_service_pb2.Outcome] = []

    async def handler(ctx: Any) -> Any:
        return await interpret(code, ctx.step)

    async def send(messages: list[common_pb2.Event]) -> list[str]:
        return [m.id or f"assigned-{i}" for i, m in enumerate(messages)]

    function = Function(
        id=execute.function_id, name=execute.function_id, triggers=(), retries=4, handler=handler
    )
    execution = Execution(function, execute, outcomes.append, sender=send)
    await asyncio.wait_for(execution.run(), 10)
    for seq, outcome in enumerate(outcomes, start=1):
        outcome.seq = seq
        normalize(outcome, execute.server_time_ms)
    return outcomes


def normalize(outcome: worker_service_pb2.Outcome, base: int) -> None:
    """Times as whole seconds after the Execute's server time; no stacks."""

    def rel(ms: int) -> int:
        return 0 if ms == 0 else (ms - base) // 1000 * 1000

    kind = outcome.WhichOneof("kind")
    if kind in ("step_completed", "step_failed"):
        message = getattr(outcome, kind)
        message.started_at_ms = rel(message.started_at_ms)
        message.ended_at_ms = rel(message.ended_at_ms)
    if kind == "step_failed":
        outcome.step_failed.error.stack = ""
    if kind == "run_failed":
        outcome.run_failed.error.stack = ""
    if kind == "suspended":
        for wait in outcome.suspended.waits:
            wait.started_at_ms = rel(wait.started_at_ms)
            if wait.HasField("sleep"):
                wait.sleep.until_ms = rel(wait.sleep.until_ms)
            if wait.HasField("wait_for_event"):
                wait.wait_for_event.timeout_until_ms = rel(wait.wait_for_event.timeout_until_ms)
            if wait.HasField("invoke"):
                wait.invoke.timeout_until_ms = rel(wait.invoke.timeout_until_ms)
