"""WorkerService: one bidirectional stream per worker process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import grpc

from controlplane import __version__
from controlplane.access.environments import HostedEnvironments
from controlplane.api import convert
from controlplane.api.auth import current_caller
from controlplane.api.decoding import Undecodable, nul_problem, outcome_holds_nul
from controlplane.api.errors import status_code, status_message
from controlplane.engine.engine import Engine
from controlplane.engine.sessions import WorkerSession
from controlplane.engine.settings import format_bytes
from controlplane.engine.validation import (
    MAX_APP_ID_LENGTH,
    MAX_FUNCTION_ID_LENGTH,
    PROTOCOL_VERSION,
    definition_size_problem,
    hello_size_problem,
)
from controlplane.model import Execution, Refusal
from controlplane.model.errors import (
    EngineError,
    Internal,
    ProtocolError,
    Unavailable,
    WorkerRejected,
)
from tether.v1 import worker_service_pb2 as ws
from tether.v1 import worker_service_pb2_grpc as ws_grpc

log = logging.getLogger("tether.workers")

Context = grpc.aio.ServicerContext[ws.WorkerFrame, ws.ServerFrame]
# Dispatch frames stay well under the 128 MiB gRPC message limit; one execution
# (at most 32 MiB of state) always fits.
MAX_DISPATCH_BYTES = 48 * 1024 * 1024
# What context.read() returns at the end of the stream (missing from the stubs).
EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]


def _check_size(hello: ws.Hello) -> None:
    """What a Hello may declare, checked on the message before any other work."""
    app_id = hello.app_id[:MAX_APP_ID_LENGTH]
    problem = hello_size_problem(app_id, len(hello.functions), len(hello.held))
    if problem:
        raise WorkerRejected("invalid_hello", problem)
    for definition in hello.functions:
        problem = definition_size_problem(
            definition.ByteSize(), len(definition.triggers), len(definition.cancel_on)
        )
        if problem:
            function_id = definition.id[:MAX_FUNCTION_ID_LENGTH]
            raise WorkerRejected("invalid_function", f"function {function_id!r}: {problem}")


class StreamSink:
    """Frames for one worker, queued for the stream's writer. Never blocks."""

    def __init__(self) -> None:
        self._frames: asyncio.Queue[ws.ServerFrame | None] = asyncio.Queue()
        self.reason = ""
        # Set when the stream ends because of a problem: the worker receives it as
        # the stream's status. None: the stream ends with OK.
        self.error: EngineError | None = None
        self._closed = False

    def dispatch(self, executions: list[Execution]) -> None:
        frame = ws.Dispatch()
        size = 0
        for execution in executions:
            message = convert.execute(execution)
            message_size = message.ByteSize()
            if frame.executions and size + message_size > MAX_DISPATCH_BYTES:
                self._frames.put_nowait(ws.ServerFrame(dispatch=frame))
                frame = ws.Dispatch()
                size = 0
            frame.executions.append(message)
            size += message_size
        self._frames.put_nowait(ws.ServerFrame(dispatch=frame))

    def ack(self, through_seq: int, refusals: list[Refusal]) -> None:
        acks = ws.Acks(
            through_seq=through_seq,
            refused=[
                ws.Refusal(seq=r.seq, execution_id=r.execution_id, reason=r.reason)
                for r in refusals
            ],
        )
        self._frames.put_nowait(ws.ServerFrame(acks=acks))

    def cancel(
        self, execution_id: str, run_id: str, reason: str, *, run_cancelled: bool = False
    ) -> None:
        cancel = ws.Cancel(
            execution_id=execution_id, run_id=run_id, reason=reason, run_cancelled=run_cancelled
        )
        self._frames.put_nowait(ws.ServerFrame(cancel=cancel))

    def ping(self, now_ms: int) -> None:
        self._frames.put_nowait(ws.ServerFrame(ping=ws.Ping(server_time_ms=now_ms)))

    def close(self, reason: str = "", *, error: EngineError | None = None) -> None:
        """End the stream once the frames already queued are written. The first
        close decides how it ends."""
        if self._closed:
            return
        self._closed = True
        self.reason = reason or (str(error) if error is not None else "")
        self.error = error
        self._frames.put_nowait(None)

    async def next_frames(self) -> list[ws.ServerFrame] | None:
        """Every frame queued, with neighbouring acks merged; None once the sink
        is closed."""
        first = await self._frames.get()
        if first is None:
            return None
        frames = [first]
        closed = False
        while not self._frames.empty():
            frame = self._frames.get_nowait()
            if frame is None:
                closed = True
                break
            frames.append(frame)
        merged = _merge(frames)
        if closed:
            self._frames.put_nowait(None)
        return merged


def _merge(frames: list[ws.ServerFrame]) -> list[ws.ServerFrame]:
    """Consecutive Acks become one (they are cumulative)."""
    merged: list[ws.ServerFrame] = []
    for frame in frames:
        last = merged[-1] if merged else None
        if last is not None and frame.HasField("acks") and last.HasField("acks"):
            last.acks.through_seq = max(last.acks.through_seq, frame.acks.through_seq)
            last.acks.refused.extend(frame.acks.refused)
            continue
        merged.append(frame)
    return merged


class WorkerServicer(ws_grpc.WorkerServiceServicer):
    def __init__(self, environments: HostedEnvironments) -> None:
        self._environments = environments
        # Each open stream's sink, and the environment it serves.
        self._sinks: dict[StreamSink, str] = {}

    def close_all(self) -> None:
        """End every worker stream (shutdown); workers reconnect elsewhere or later."""
        for sink in list(self._sinks):
            sink.close("the control plane is shutting down")

    def close_environment(self, environment: str, reason: str) -> None:
        """End the streams of the workers serving ``environment``."""
        for sink, served in list(self._sinks.items()):
            if served == environment:
                sink.close(reason)

    async def Connect(self, request_iterator: Any, context: Context) -> None:  # type: ignore[override]
        first = await context.read()
        if first is EOF:
            return
        if isinstance(first, Undecodable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, first.problem("the first frame"))
        assert isinstance(first, ws.WorkerFrame)
        if first.WhichOneof("frame") != "hello":
            await _reject(context, "invalid_hello", "the first frame on the stream must be Hello")
            return
        sink = StreamSink()
        caller = current_caller.get()
        try:
            engine = self._environments.engine(caller.environment)
            app_id = first.hello.app_id
            if not caller.may_serve(app_id):
                allowed = ", ".join(repr(a) for a in caller.apps)
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"this API key may serve app(s) {allowed} only, not {app_id[:128]!r}",
                )
            _check_size(first.hello)
            problem = nul_problem(first.hello, "the Hello")
            if problem:
                raise WorkerRejected("invalid_hello", problem)
            # Off the event loop, as the engine's checks are: a large app's
            # definitions must not hold up other callers.
            hello = await asyncio.to_thread(convert.worker_hello, first.hello)
            session = await engine.connect_worker(hello, sink)
        except WorkerRejected as rejected:
            log.warning("worker rejected: %s", rejected)
            await _reject(context, rejected.code, str(rejected))
            return
        except Unavailable as error:
            # Not the worker's fault: it reconnects (the store logs the outage).
            context.set_code(grpc.StatusCode.UNAVAILABLE)
            context.set_details(status_message(error))
            return
        except EngineError as error:
            log.warning("worker rejected: %s", error)
            await _reject(context, "invalid_function", str(error))
            return
        settings = engine.settings
        tasks: list[asyncio.Task[None]] = []
        # From here on the session exists: whatever happens (even the Welcome
        # failing to go out), it is disconnected at the end.
        try:
            await context.write(
                ws.ServerFrame(
                    welcome=ws.Welcome(
                        session_id=session.id,
                        protocol_version=PROTOCOL_VERSION,
                        heartbeat_interval_ms=settings.heartbeat_interval_ms,
                        lease_timeout_ms=settings.lease_timeout_ms,
                        limits=convert.limits(settings.limits),
                        server_version=__version__,
                    )
                )
            )
            self._sinks[sink] = caller.environment
            tasks.append(asyncio.create_task(self._read(engine, context, session, sink)))
            tasks.append(asyncio.create_task(self._ping(engine, session, sink)))
            while (frames := await sink.next_frames()) is not None:
                for frame in frames:
                    await context.write(frame)
            if sink.error is not None:
                # The worker learns why its stream ended from the status.
                context.set_code(status_code(sink.error))
                context.set_details(status_message(sink.error))
        finally:
            self._sinks.pop(sink, None)
            ended = bool(tasks) and tasks[0].done()
            reason = sink.reason or ("stream ended" if ended else "closed by the control plane")
            for task in tasks:
                task.cancel()
            await asyncio.shield(engine.disconnect_worker(session, reason))

    async def _read(
        self, engine: Engine, context: Context, session: WorkerSession, sink: StreamSink
    ) -> None:
        heartbeats: set[asyncio.Task[None]] = set()
        try:
            while True:
                frame = await context.read()
                if frame is EOF:
                    return
                if isinstance(frame, Undecodable):
                    raise ProtocolError(frame.problem("a frame"))
                assert isinstance(frame, ws.WorkerFrame)
                engine.heard_from(session)
                size, limit = frame.ByteSize(), engine.settings.limits.max_frame_bytes
                if size > limit:
                    raise ProtocolError(
                        f"a frame of {format_bytes(size)}; the limit is {format_bytes(limit)} "
                        "(Welcome.limits.max_frame_bytes): split outcomes across frames"
                    )
                kind = frame.WhichOneof("frame")
                if kind == "outcomes":
                    outcomes = [convert.outcome(o) for o in frame.outcomes.outcomes]
                    if any(outcome_holds_nul(o) for o in outcomes):
                        problem = nul_problem(frame.outcomes, "an outcomes frame")
                        raise ProtocolError(
                            problem
                            or "an outcomes frame contains a NUL character (U+0000), "
                            "which text cannot hold"
                        )
                    engine.receive_outcomes(session, outcomes)
                    # Back-pressure: no further frame is read while this worker
                    # has a stream's worth of outcomes waiting for their commit.
                    await engine.room_for_outcomes(session)
                elif kind == "heartbeat":
                    task = asyncio.create_task(
                        engine.heartbeat(session, list(frame.heartbeat.execution_ids))
                    )
                    heartbeats.add(task)
                    task.add_done_callback(heartbeats.discard)
                elif kind == "drain":
                    engine.drain(session)
                elif kind == "cancel_ack":
                    engine.worker_acknowledged_cancel(session, frame.cancel_ack.execution_id)
                elif kind == "hello":
                    raise ProtocolError(
                        "a second Hello: Hello is only the first frame of a stream "
                        "(open a new stream to register again)"
                    )
                else:
                    # No kind set, or one this control plane does not know (a
                    # newer worker): ignored.
                    log.warning("session %s sent a frame of no known kind; ignored", session.id)
        except EngineError as error:
            log.warning("session %s broke the protocol: %s; closing its stream", session.id, error)
            sink.close(error=error)
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("session %s: a frame could not be handled", session.id)
            sink.close(
                error=Internal(
                    "the control plane failed while handling a frame from this worker "
                    f"(session {session.id}); its log has the details"
                )
            )
        finally:
            sink.close()

    async def _ping(self, engine: Engine, session: WorkerSession, sink: StreamSink) -> None:
        """A Ping every heartbeat interval; and the end of the stream once the
        worker has been silent for a lease timeout (and an interval more, see
        ``Engine.close_if_silent``)."""
        interval = engine.settings.heartbeat_interval_ms / 1000
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(interval)
                if engine.close_if_silent(session):
                    return
                sink.ping(engine.clock.now_ms())


async def _reject(context: Context, code: str, reason: str) -> None:
    await context.write(
        ws.ServerFrame(
            rejected=ws.Rejected(code=convert.REJECT_CODES.get(code, 0), reason=reason)  # type: ignore[arg-type]
        )
    )
