"""Tether: durable, event-driven functions.

::

    from tether import Context, Tether

    app = Tether(app_id="shop")

    @app.function(id="onboarding-flow", trigger="app/user.signup")
    async def onboarding(ctx: Context) -> None:
        await ctx.step.run("send-welcome-email", send_email, ctx.event.data["email"])
        await ctx.step.sleep("wait-1d", "24h")
"""

from tether._client import Tether
from tether._context import Context
from tether._errors import (
    ConfigError,
    FailedPreconditionError,
    InvalidArgumentError,
    LimitExceededError,
    NonRetriableError,
    NotFoundError,
    PermissionDeniedError,
    RetryAfterError,
    StepError,
    TetherError,
    UnauthenticatedError,
    UnavailableError,
    WorkerRejectedError,
)
from tether._flow import (
    Batching,
    Concurrency,
    Debounce,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
)
from tether._function import Function
from tether._functions_admin import FunctionInfo, PauseMode
from tether._models import (
    CronTick,
    ErrorInfo,
    Event,
    HistoryEntry,
    Run,
    RunPage,
    RunStatus,
    SendResult,
    StepInfo,
)
from tether._step import Step
from tether._triggers import CronTrigger, EventTrigger, cron, event
from tether._version import __version__
from tether._worker import Worker

__all__ = [
    "Batching",
    "Concurrency",
    "ConfigError",
    "Context",
    "CronTick",
    "CronTrigger",
    "Debounce",
    "ErrorInfo",
    "Event",
    "EventTrigger",
    "FailedPreconditionError",
    "Function",
    "FunctionInfo",
    "HistoryEntry",
    "InvalidArgumentError",
    "LimitExceededError",
    "NonRetriableError",
    "NotFoundError",
    "PauseMode",
    "PermissionDeniedError",
    "Priority",
    "RateLimit",
    "RetryAfterError",
    "Run",
    "RunPage",
    "RunStatus",
    "SendResult",
    "Singleton",
    "Step",
    "StepError",
    "StepInfo",
    "Tether",
    "TetherError",
    "Throttle",
    "UnauthenticatedError",
    "UnavailableError",
    "Worker",
    "WorkerRejectedError",
    "__version__",
    "cron",
    "event",
]
