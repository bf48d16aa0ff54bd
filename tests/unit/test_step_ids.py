"""Step ids: ``:n`` suffixes for repeats and the SHA-1 wire id."""

from __future__ import annotations

import hashlib

import pytest

from tests.unit._match import exactly
from tether._step_ids import MAX_STEP_ID_LENGTH, StepIds, hash_step_id


def test_first_use_is_the_id_itself() -> None:
    ids = StepIds()
    assert ids.allocate("send-welcome-email") == "send-welcome-email"
    assert ids.allocate("wait-1d") == "wait-1d"


def test_repeats_get_numbered_suffixes() -> None:
    ids = StepIds()
    assert [ids.allocate("charge") for _ in range(4)] == [
        "charge",
        "charge:1",
        "charge:2",
        "charge:3",
    ]


def test_repeats_of_different_ids_are_counted_separately() -> None:
    ids = StepIds()
    got = [ids.allocate(step) for step in ["a", "b", "a", "b", "a"]]
    assert got == ["a", "b", "a:1", "b:1", "a:2"]


def test_an_explicit_suffixed_id_already_used_is_skipped() -> None:
    ids = StepIds()
    assert ids.allocate("x:1") == "x:1"
    assert ids.allocate("x") == "x"
    assert ids.allocate("x") == "x:2"
    assert ids.allocate("x") == "x:3"


def test_an_explicit_suffixed_id_taken_by_a_repeat_is_itself_suffixed() -> None:
    ids = StepIds()
    assert ids.allocate("x") == "x"
    assert ids.allocate("x") == "x:1"
    assert ids.allocate("x:1") == "x:1:1"


def test_allocation_is_deterministic() -> None:
    sequence = ["fetch", "fetch:2", "fetch", "fetch", "fetch", "send"]
    first, second = StepIds(), StepIds()
    assert [first.allocate(s) for s in sequence] == [second.allocate(s) for s in sequence]


def test_suffixes_skip_every_explicit_id() -> None:
    ids = StepIds()
    got = [ids.allocate(s) for s in ["fetch", "fetch:2", "fetch", "fetch", "fetch"]]
    assert got == ["fetch", "fetch:2", "fetch:1", "fetch:3", "fetch:4"]


def test_hash_is_sha1_hex_of_the_suffixed_id() -> None:
    # The SHA-1 test vector from FIPS 180: SHA-1("abc").
    assert hash_step_id("abc") == "a9993e364706816aba3e25717850c26c9cd0d89d"
    assert hash_step_id("charge:1") == hashlib.sha1(b"charge:1").hexdigest()
    assert hash_step_id("charge:1") != hash_step_id("charge")


def test_hash_encodes_the_id_as_utf8() -> None:
    assert hash_step_id("envoyer-é") == hashlib.sha1("envoyer-é".encode()).hexdigest()
    assert len(hash_step_id("envoyer-é")) == 40


def test_empty_id_is_rejected() -> None:
    with pytest.raises(
        ValueError, match=exactly("a step needs a non-empty string id, like 'send-welcome-email'")
    ):
        StepIds().allocate("")


def test_non_string_id_is_rejected() -> None:
    with pytest.raises(ValueError, match="non-empty string id"):
        StepIds().allocate(7)  # type: ignore[arg-type]


def test_id_at_the_length_limit_is_accepted() -> None:
    step_id = "s" * MAX_STEP_ID_LENGTH
    assert StepIds().allocate(step_id) == step_id


def test_too_long_id_names_its_length_and_the_limit() -> None:
    step_id = "s" * (MAX_STEP_ID_LENGTH + 1)
    message = f"step id {'s' * 40!r}... is 257 characters; the limit is 256"
    with pytest.raises(ValueError, match=exactly(message)):
        StepIds().allocate(step_id)


def test_a_rejected_id_does_not_consume_a_slot() -> None:
    ids = StepIds()
    with pytest.raises(ValueError, match="non-empty"):
        ids.allocate("")
    assert ids.allocate("a") == "a"
