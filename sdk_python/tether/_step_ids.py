"""Step ids: the ``:n`` suffix for repeats and the SHA-1 hash used on the wire."""

from __future__ import annotations

import hashlib

MAX_STEP_ID_LENGTH = 256


def hash_step_id(name: str) -> str:
    """The wire id of a step: SHA-1 hex of its id as written, with any suffix."""
    return hashlib.sha1(name.encode("utf-8")).hexdigest()


def step_span_id(run_id: str, hashed_step_id: str, attempt: int) -> int:
    """The span id the control plane gives a step attempt (see docs/protocol.md)."""
    digest = hashlib.sha1(f"{run_id}:{hashed_step_id}:{attempt}".encode()).hexdigest()[:16]
    return int(digest, 16) or 1


class StepIds:
    """Assigns each step call its id: the id as written the first time, then
    ``id:1``, ``id:2``... for repeats, skipping any already taken."""

    def __init__(self) -> None:
        self._used: set[str] = set()
        self._next_suffix: dict[str, int] = {}

    def allocate(self, step_id: str) -> str:
        if not isinstance(step_id, str) or not step_id:
            raise ValueError("a step needs a non-empty string id, like 'send-welcome-email'")
        if len(step_id) > MAX_STEP_ID_LENGTH:
            raise ValueError(
                f"step id {step_id[:40]!r}... is {len(step_id)} characters; "
                f"the limit is {MAX_STEP_ID_LENGTH}"
            )
        name = step_id
        if name in self._used:
            n = self._next_suffix.get(step_id, 1)
            while f"{step_id}:{n}" in self._used:
                n += 1
            name = f"{step_id}:{n}"
            self._next_suffix[step_id] = n + 1
        self._used.add(name)
        return name
