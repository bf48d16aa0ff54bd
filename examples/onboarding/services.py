"""What the flow talks to outside Tether.

In a real app these are your email provider and your database. Here the email
provider is a stand-in that logs (and keeps) what it would send, and the project
directory is in memory; tests replace or inspect both.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger("onboarding.email")


@dataclass
class SentEmail:
    to: str
    template: str


@dataclass
class EmailProvider:
    """Stands in for an email API: records each message instead of sending it."""

    sent: list[SentEmail] = field(default_factory=list)

    def send(self, to: str, template: str) -> dict[str, str]:
        self.sent.append(SentEmail(to, template))
        log.info("email %r sent to %s", template, to)
        return {"to": to, "template": template}


@dataclass
class ProjectDirectory:
    """Which users have created a project (your database, in a real app)."""

    owners: set[int] = field(default_factory=set)

    def add(self, user_id: int) -> None:
        self.owners.add(user_id)

    def has_project(self, user_id: int) -> bool:
        return user_id in self.owners


email = EmailProvider()
projects = ProjectDirectory()
