"""The ``tether`` command line."""

from __future__ import annotations

import click

from controlplane import __version__
from controlplane.cli.doctor import doctor
from controlplane.cli.environments import environments
from controlplane.cli.events import events, send
from controlplane.cli.functions import functions
from controlplane.cli.keys import keys
from controlplane.cli.purge import purge
from controlplane.cli.runs import runs
from controlplane.cli.serve import dev, migrate_command, server, worker


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tether")
def cli() -> None:
    """Tether: durable, event-driven workflows.

    Start with 'tether dev', then 'tether send NAME --data JSON' and
    'tether runs list'.
    """


for command in (
    dev,
    server,
    worker,
    send,
    events,
    runs,
    functions,
    keys,
    environments,
    doctor,
    purge,
    migrate_command,
):
    cli.add_command(command)


def main() -> None:
    cli()
