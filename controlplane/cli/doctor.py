"""tether doctor: the invariants a durable engine keeps, checked on the
database (see _store.py for who may run it), and repaired with --repair."""

from __future__ import annotations

import json
import sys

import click

from controlplane.cli._store import db_option, on_store
from controlplane.model.access import DEFAULT_ENVIRONMENT


@click.command("doctor")
@click.option("--repair", is_flag=True, help="Fix what can be fixed safely, and say what was done.")
@click.option(
    "--env",
    "environment",
    default=DEFAULT_ENVIRONMENT,
    show_default=True,
    help="The environment to examine.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@db_option
def doctor(repair: bool, environment: str, as_json: bool, db: str) -> None:
    """Check that no run is stuck and nothing is held for a finished run: every
    unfinished run has a queue entry; no queue entry, lease, concurrency slot,
    singleton key, wait or watch outlives its run; every cron trigger has its
    next tick. Exits 1 while a problem remains."""
    from controlplane.engine import doctor as checks
    from controlplane.engine.clock import SystemClock
    from controlplane.model.invariants import Violation
    from controlplane.store import Store
    from controlplane.store.tx import ReadTx

    def now(tx: ReadTx) -> int:
        # A control plane on a virtual clock may be ahead of the wall clock.
        return max(SystemClock().now_ms(), tx.latest_recorded_ms())

    async def examine(store: Store) -> list[tuple[Violation, str]]:
        if repair:
            done = await store.write(lambda tx: checks.repair(tx, now(tx)))
            return [(r.violation, r.action) for r in done]
        return [(v, "") for v in await store.read(lambda tx: checks.examine(tx, now(tx)))]

    found = on_store(db, examine, environment)
    for violation, action in found:
        if as_json:
            line = {
                "invariant": violation.invariant.value,
                "run_id": violation.run_id,
                "detail": violation.detail,
                "repaired": action or None,
            }
            click.echo(json.dumps(line))
            continue
        subject = f"run {violation.run_id}" if violation.run_id else "schedule"
        click.echo(f"{violation.invariant}: {subject}: {violation.detail}")
        if action:
            click.echo(f"    repaired: {action}")
    if not found:
        click.echo(f"environment {environment}: every invariant holds", err=True)
        return
    if repair:
        click.echo(f"repaired {len(found)} problem(s) in environment {environment}", err=True)
        return
    click.echo(
        f"{len(found)} problem(s) in environment {environment}; run with --repair to fix them",
        err=True,
    )
    sys.exit(1)
