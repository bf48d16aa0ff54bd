"""tether purge: retention by hand, on the database (see _store.py for who may
run it): what a control plane's background purge deletes, for a cutoff you
choose, or --dry-run to see what would go."""

from __future__ import annotations

import click

from controlplane.cli._store import db_option, on_store
from controlplane.model.access import DEFAULT_ENVIRONMENT


@click.command("purge")
@click.option(
    "--older-than",
    "older_than",
    required=True,
    help="Delete finished runs that ended longer ago than this ('3d', '12h'), and the "
    "events received before then that no remaining run or wait needs.",
)
@click.option("--dry-run", is_flag=True, help="Count what would go; delete nothing.")
@click.option(
    "--env", "environment", default=DEFAULT_ENVIRONMENT, show_default=True, help="The environment."
)
@db_option
def purge(older_than: str, dry_run: bool, environment: str, db: str) -> None:
    """Delete finished runs (with their steps and history) and unneeded events
    older than --older-than. Unfinished runs and the events they need stay."""
    from controlplane.config import parse_retention
    from controlplane.engine import retention
    from controlplane.engine.clock import SystemClock
    from controlplane.store import Store

    try:
        older_than_ms = parse_retention(older_than)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--older-than") from None
    if older_than_ms is None:
        raise click.BadParameter(
            "'forever' deletes nothing: give a duration", param_hint="--older-than"
        )
    cutoff_ms = older_than_ms

    async def work(store: Store) -> tuple[int, int]:
        now = max(SystemClock().now_ms(), await store.read(lambda r: r.latest_recorded_ms()))
        if dry_run:
            before = now - cutoff_ms
            return await store.read(
                lambda r: (
                    r.count_runs_ended_before(before),
                    r.count_events_unneeded_before(before),
                )
            )
        done = await retention.purge(store, now, cutoff_ms)
        return done.runs, done.events

    runs, events = on_store(db, work, environment)
    verb = "would delete" if dry_run else "deleted"
    click.echo(
        f"environment {environment}: {verb} {runs} finished run(s) and {events} event(s) "
        f"older than {older_than}"
    )
