"""Fixtures shared by every suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.databases import fresh_database, postgres_url


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    """Keep each phase's report on the test (``item.report_call``...), so that
    fixtures print the processes' logs of a test that failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def database_params() -> list[object]:
    """The databases a test runs on: SQLite, and PostgreSQL when configured."""
    return [
        "sqlite",
        pytest.param(
            "postgres",
            marks=pytest.mark.skipif(
                postgres_url() is None, reason="TETHER_TEST_POSTGRES_URL is not set"
            ),
        ),
    ]


@pytest.fixture(params=database_params())
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, then a fresh PostgreSQL database."""
    with fresh_database(request.param, tmp_path) as url:
        yield url
