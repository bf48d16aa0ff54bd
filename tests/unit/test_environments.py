"""Environment names, and where each environment's data lives."""

from __future__ import annotations

import pytest

from controlplane.access.environments import environment_problem, store_location
from controlplane.model.errors import FailedPrecondition


@pytest.mark.parametrize("name", ["prod", "staging-eu", "t1", "a" * 32])
def test_valid_names(name: str) -> None:
    assert environment_problem(name) is None


@pytest.mark.parametrize("name", ["", "Prod", "1prod", "prod_eu", "pr od", "-x", "a" * 33, "é"])
def test_invalid_names_are_named_with_the_rule(name: str) -> None:
    problem = environment_problem(name)
    assert problem is not None
    assert "1 to 32 lowercase letters, digits and '-', starting with a letter" in problem


def test_each_environment_has_a_store_of_its_own() -> None:
    sqlite = "sqlite:///data/tether.db"
    assert store_location(sqlite, "default") == (sqlite, None)
    assert store_location(sqlite, "prod") == ("sqlite:///data/tether.env-prod.db", None)
    postgres = "postgresql+psycopg://tether:secret@db/tether"
    assert store_location(postgres, "staging-eu") == (postgres, "tether_env_staging_eu")
    with pytest.raises(FailedPrecondition, match="need a database file"):
        store_location("sqlite:///:memory:", "prod")
