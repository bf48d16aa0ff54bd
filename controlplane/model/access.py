"""Who may call the control plane: roles, API keys and the caller they make."""

from __future__ import annotations

import enum
from dataclasses import dataclass

#: The environment ``tether dev`` runs, and the one that lists the others.
DEFAULT_ENVIRONMENT = "default"


class Role(enum.StrEnum):
    """What a key may do: ``admin`` everything, ``worker`` also what ``send``
    may (steps send events); no other role includes another."""

    #: Send events, and nothing else.
    SEND = "send"
    #: Connect as a worker and serve the functions of the apps it is bound to
    #: (and send events, as steps do).
    WORKER = "worker"
    #: Read runs, events and functions.
    READ = "read"
    #: Everything: cancel, replay, pause, invoke, keys.
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as stored: its secret only as a hash, shown once when created."""

    id: str
    name: str
    role: Role
    #: The apps a worker key may serve (empty: any app of its environment).
    apps: tuple[str, ...]
    created_at_ms: int
    revoked_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Environment:
    """A unit of isolation: its functions, events, runs, waits, schedules,
    flow-control state and keys are seen by nothing outside it."""

    name: str
    created_at_ms: int
    #: How long its finished runs are kept: None for the control plane's
    #: default, FOREVER to keep them.
    retention_ms: int | None = None


#: An environment's retention that keeps finished runs forever.
FOREVER = -1


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made a call: the key's environment, role and apps (a key given at
    start is admin of the default environment)."""

    role: Role
    apps: tuple[str, ...] = ()
    key_id: str = ""
    environment: str = DEFAULT_ENVIRONMENT

    def may(self, needed: Role) -> bool:
        """Whether this caller's role grants ``needed``."""
        return needed in _GRANTS[self.role]

    def refusal(self, what: str, needed: Role) -> str:
        """Why this caller may not do ``what``, which needs ``needed``."""
        alternative = "" if needed is Role.ADMIN else " (or 'admin')"
        return (
            f"{what} needs the '{needed}' role{alternative}; "
            f"this API key has the '{self.role}' role"
        )

    def may_serve(self, app_id: str) -> bool:
        """Whether a worker with this key may register and serve ``app_id``."""
        return not self.apps or app_id in self.apps


_GRANTS: dict[Role, frozenset[Role]] = {
    Role.SEND: frozenset({Role.SEND}),
    Role.WORKER: frozenset({Role.WORKER, Role.SEND}),
    Role.READ: frozenset({Role.READ}),
    Role.ADMIN: frozenset(Role),
}
