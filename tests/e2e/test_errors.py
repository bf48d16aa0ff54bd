"""What the CLI says when the control plane is not there or a run does not exist."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.e2e.cli import free_port, tether
from tests.e2e.conftest import Plane

UNKNOWN_RUN = "01ZZZZZZZZZZZZZZZZZZZZZZZZ"


def unreachable(address: str) -> str:
    return (
        f"Error: cannot reach the control plane at {address}: is 'tether dev' or "
        "'tether server' running? (set --address or TETHER_ADDRESS)"
    )


@pytest.mark.parametrize(
    "command",
    [
        ("send", "e2e/steps.requested", "--data", '{"n": 1}'),
        ("runs", "list"),
        ("runs", "show", UNKNOWN_RUN),
        ("runs", "watch", UNKNOWN_RUN, "--timeout", "5"),
        ("runs", "cancel", UNKNOWN_RUN),
        ("functions", "list", "--json"),
        ("events", "list"),
    ],
    ids=lambda command: "-".join(command[:2]),
)
def test_an_unreachable_address_gives_one_line_naming_it(command: tuple[str, ...]) -> None:
    address = f"127.0.0.1:{free_port()}"

    result = tether(*command, address=address, timeout=20)

    assert result.code == 1, result
    assert result.stdout == ""
    assert result.error_lines == [unreachable(address)], result


def test_an_unreachable_address_from_the_environment_is_named() -> None:
    address = f"localhost:{free_port()}"

    result = tether("runs", "list", env={"TETHER_ADDRESS": address}, timeout=20)

    assert result.code == 1, result
    assert result.error_lines == [unreachable(address)], result


@pytest.mark.parametrize("command", ["show", "cancel", "replay", "watch"])
def test_an_unknown_run_id_is_not_found(plane: Plane, command: str) -> None:
    result = tether("runs", command, UNKNOWN_RUN, address=plane.address)

    assert result.code == 1, result
    assert result.stdout == ""
    assert result.error_lines == [f"Error: run '{UNKNOWN_RUN}' not found (NOT_FOUND)"], result


def test_a_taken_http_port_ends_the_server_with_one_line_instead_of_a_hang(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = tether(
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--http-port",
            str(port),
            "--db",
            f"sqlite:///{tmp_path / 'taken.db'}",
            timeout=30,
        )
    assert result.code == 1, str(result)
    [line] = [line for line in result.error_lines if line.startswith("Error:")]
    assert f"HTTP port {port}" in line, str(result)
    assert "in use" in line, str(result)
    assert "Traceback" not in result.stderr
