"""tether send, tether events."""

from __future__ import annotations

import json
from typing import Any, TextIO

import click

from controlplane.cli import _format
from controlplane.cli._client import Remote, make_remote, remote_options
from tether.v1 import common_pb2, event_service_pb2, run_service_pb2


@click.command()
@click.argument("name", required=False)
@click.option(
    "--data", "data", default="{}", show_default=True, help="The event's data: a JSON object."
)
@click.option("--id", "event_id", default="", help="Deduplication id (24 hours).")
@click.option("--user", default="", help="Who caused it: a JSON object.")
@click.option(
    "--file",
    "events_file",
    type=click.File("r"),
    default=None,
    help="Send every event of this file instead: JSON lines (or one JSON array) of "
    '{"name": ..., "data": {...}, "id": ..., "user": {...}}; "-" reads standard input.',
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@remote_options
def send(
    name: str | None,
    data: str,
    event_id: str,
    user: str,
    events_file: TextIO | None,
    as_json: bool,
    address: str,
    api_key: str | None,
    tls: bool | None,
) -> None:
    """Send the event NAME, for example: tether send app/user.signup --data '{"user_id": 1}'
    (or, with --file, many events, in batches, showing progress)."""
    if events_file is not None:
        if name:
            raise click.UsageError("give an event NAME or --file, not both")
        _send_file(events_file, as_json, make_remote(address, api_key, tls))
        return
    if not name:
        raise click.UsageError("give the event NAME to send (or --file)")
    for label, raw in (("--data", data), ("--user", user)):
        if not raw:
            continue
        try:
            value = json.loads(raw)
        except ValueError as error:
            raise click.BadParameter(f"not valid JSON: {error}", param_hint=label) from None
        if not isinstance(value, dict):
            raise click.BadParameter("must be a JSON object, like '{\"id\": 1}'", param_hint=label)
    event = common_pb2.Event(
        id=event_id, name=name, data=data.encode(), user=user.encode() if user else b""
    )
    remote = make_remote(address, api_key, tls)
    with remote.events() as stub:
        response = stub.Send(
            event_service_pb2.SendRequest(events=[event]), metadata=remote.metadata
        )
    result = response.results[0]
    if as_json:
        click.echo(_format.dump(_result_json(result)))
        return
    if result.duplicate:
        click.echo(
            f"event {result.event_id} was already received in the last 24 hours; nothing started"
        )
        return
    click.echo(f"sent event {result.event_id}")
    for skipped in result.skipped:
        click.echo(f"skipped {skipped.app_id}/{skipped.function_id}: {skipped.reason}")
    for run_id in result.resumed_run_ids:
        click.echo(f"resumed waiting run {run_id}")
    for run_id in result.cancelled_run_ids:
        click.echo(f"cancelled run {run_id} (its cancel_on matched)")
    touched = (result.run_ids, result.skipped, result.resumed_run_ids, result.cancelled_run_ids)
    if not any(touched):
        click.echo(
            "no function is triggered by "
            + click.style(name, bold=True)
            + " and no waiting run matched it (see 'tether functions list')"
        )
    for run_id in result.run_ids:
        click.echo(f"started run {run_id}   (tether runs watch {run_id})")


SEND_BATCH = 500


def _result_json(result: event_service_pb2.SendResult) -> dict[str, Any]:
    return {
        "event_id": result.event_id,
        "duplicate": result.duplicate,
        "run_ids": list(result.run_ids),
        "skipped": [
            {
                "app_id": s.app_id,
                "function_id": s.function_id,
                "reason": s.reason,
                "existing_run_id": s.existing_run_id or None,
            }
            for s in result.skipped
        ],
        "resumed_run_ids": list(result.resumed_run_ids),
        "cancelled_run_ids": list(result.cancelled_run_ids),
    }


def _file_events(source: TextIO) -> list[common_pb2.Event]:
    """The events of a JSON-lines or JSON-array file; a bad entry names its line."""
    text = source.read()
    if text.lstrip().startswith("["):
        try:
            entries = list(enumerate(json.loads(text), start=1))
        except ValueError as error:
            raise click.BadParameter(
                f"not a valid JSON array: {error}", param_hint="--file"
            ) from None
        where = "entry"
    else:
        entries = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entries.append((number, json.loads(line)))
            except ValueError as error:
                raise click.BadParameter(
                    f"line {number} is not valid JSON: {error}", param_hint="--file"
                ) from None
        where = "line"
    events = []
    for number, entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise click.BadParameter(
                f'{where} {number} must be an object with a "name"', param_hint="--file"
            )
        for field in ("data", "user"):
            if not isinstance(entry.get(field, {}), dict):
                raise click.BadParameter(
                    f'{where} {number}: "{field}" must be a JSON object', param_hint="--file"
                )
        events.append(
            common_pb2.Event(
                id=str(entry.get("id", "")),
                name=entry["name"],
                data=json.dumps(entry.get("data", {})).encode(),
                user=json.dumps(entry["user"]).encode() if "user" in entry else b"",
            )
        )
    if not events:
        raise click.BadParameter("the file holds no events", param_hint="--file")
    return events


def _send_file(source: TextIO, as_json: bool, remote: Remote) -> None:
    events = _file_events(source)
    results: list[event_service_pb2.SendResult] = []
    with remote.events() as stub, _format.progress(len(events), "sending events") as advance:
        for start in range(0, len(events), SEND_BATCH):
            batch = events[start : start + SEND_BATCH]
            response = stub.Send(
                event_service_pb2.SendRequest(events=batch), metadata=remote.metadata
            )
            results.extend(response.results)
            advance(len(batch))
    if as_json:
        click.echo(_format.dump([_result_json(r) for r in results]))
        return
    duplicates = sum(r.duplicate for r in results)
    runs = sum(len(r.run_ids) for r in results)
    skipped = sum(len(r.skipped) for r in results)
    click.echo(
        f"sent {len(results):,} event(s): {runs:,} run(s) started, {skipped:,} skipped, "
        f"{duplicates:,} duplicate(s)"
    )


@click.group()
def events() -> None:
    """Inspect stored events."""


@events.command("list")
@click.option("--name", default="", help="Only events with this name.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@remote_options
def list_events(
    name: str, limit: int, as_json: bool, address: str, api_key: str | None, tls: bool | None
) -> None:
    """Recent events, newest first."""
    remote = make_remote(address, api_key, tls)
    with remote.runs() as stub:
        response = stub.ListEvents(
            run_service_pb2.ListEventsRequest(name=name, page_size=limit), metadata=remote.metadata
        )
    if as_json:
        click.echo(
            _format.dump([_format.event_json(e.event, e.received_at_ms) for e in response.events])
        )
        return
    if not response.events:
        click.echo("no events" + (f" named {name!r}" if name else ""))
        return
    rows = [
        [
            e.event.id,
            e.event.name,
            _format.timestamp(e.received_at_ms),
            _format.payload(e.event.data, 60),
        ]
        for e in response.events
    ]
    click.echo(_format.table(["EVENT", "NAME", "RECEIVED (UTC)", "DATA"], rows))


@events.command("show")
@click.argument("event_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@remote_options
def show_event(
    event_id: str, as_json: bool, address: str, api_key: str | None, tls: bool | None
) -> None:
    """One event and the runs it started."""
    remote = make_remote(address, api_key, tls)
    with remote.runs() as stub:
        response = stub.GetEvent(
            run_service_pb2.GetEventRequest(event_id=event_id), metadata=remote.metadata
        )
    if as_json:
        value = _format.event_json(response.event.event, response.event.received_at_ms)
        value["runs"] = [_format.run_json(r) for r in response.runs]
        value["skipped"] = [
            {"app_id": s.app_id, "function_id": s.function_id, "reason": s.reason}
            for s in response.skipped
        ]
        click.echo(_format.dump(value))
        return
    event = response.event.event
    click.echo(f"{click.style('Event', bold=True)} {event.id}  {event.name}")
    click.echo(f"  received {_format.timestamp(response.event.received_at_ms)}")
    click.echo(f"  data     {_format.payload(event.data, 400)}")
    if response.runs:
        click.echo("")
        click.echo(_format.runs_table(list(response.runs)))
    for skipped in response.skipped:
        click.echo(f"skipped {skipped.app_id}/{skipped.function_id}: {skipped.reason}")
