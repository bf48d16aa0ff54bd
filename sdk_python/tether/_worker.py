"""The worker: one stream to the control plane, many executions at once.

Outcomes are sent in batches as they happen; the control plane acknowledges them
once durable. When the stream breaks, executions keep running and their outcomes
wait; the worker reconnects at once and then with jittered exponential backoff,
re-announces what it holds in its Hello and sends every unacknowledged outcome
again (the control plane re-grants the leases still theirs and cancels the rest).
Disconnected for a whole lease timeout, it drops them: their runs have gone to
another worker. ``drain()`` (SIGTERM) stops taking work, lets what is running
finish and be acknowledged, then disconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from tether._channel import ConnectionProvider, translate
from tether._errors import (
    InvalidArgumentError,
    PermissionDeniedError,
    UnauthenticatedError,
    WorkerRejectedError,
)
from tether._execution import Execution, Limits, Sender, error_info
from tether._function import Function
from tether._version import PROTOCOL_VERSION, __version__
from tether.v1 import worker_service_pb2 as ws
from tether.v1 import worker_service_pb2_grpc as ws_grpc

log = logging.getLogger("tether.worker")

RECONNECT_BASE_S = 0.1
RECONNECT_MAX_S = 5.0
# While it holds executions the worker retries sooner: their leases wait for it
# only a lease timeout.
RECONNECT_MAX_HOLDING_S = 0.5
# Until a Welcome says otherwise (Welcome.lease_timeout_ms).
DEFAULT_LEASE_TIMEOUT_S = 15.0
# The most executions a Hello may re-announce; any more are not re-granted
# (their outcomes are refused, and the worker stops them).
MAX_HELD = 10_000
# A worker that hears nothing from the control plane for this many heartbeat
# intervals treats the connection as dead.
SILENCE_INTERVALS = 3
# What call.read() returns at the end of the stream (missing from the stubs).
EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]
_DEFAULT_LIMITS = Limits()


class ConnectionLost(Exception):
    """The stream ended or failed; the worker reconnects. ``code`` is the status
    the control plane ended it with, when it gave one."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


# Statuses that end a stream because this SDK broke the protocol or the control
# plane failed: worth an error in the log, though reconnecting recovers.
_PROBLEM_CODES = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL)


class Worker:
    def __init__(
        self,
        app_id: str,
        connection: ConnectionProvider,
        send_events: Sender,
        functions: Sequence[Function],
        *,
        capacity: int = 100,
        threads: int | None = None,
        instance_id: str | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        if not functions:
            raise ValueError(f"app {app_id!r} has no functions to serve")
        self.app_id = app_id
        self._connection = connection
        self._send_events = send_events
        self._functions = {f.id: f for f in functions}
        self.capacity = capacity
        self.instance_id = instance_id or f"{socket.gethostname()}-{os.getpid()}"
        self._threads = ThreadPoolExecutor(
            max_workers=threads or min(64, max(4, capacity)), thread_name_prefix="tether-step"
        )
        self._executions: dict[str, tuple[Execution, asyncio.Task[None]]] = {}
        # Outcomes not yet sent, and those sent on this stream and not yet
        # acknowledged (in seq order): both are sent again after a reconnect.
        self._outbox: list[ws.Outcome] = []
        self._unacked: list[ws.Outcome] = []
        self._control: list[ws.WorkerFrame] = []
        self._wake_sender = asyncio.Event()
        self._next_seq = 1
        self._lease_timeout_s = DEFAULT_LEASE_TIMEOUT_S
        self._heartbeat_interval_s = 3.0
        # When the control plane was last heard from (monotonic): its leases
        # were extended no earlier than a heartbeat interval before.
        self._last_heard = 0.0
        # Drops what the worker holds once disconnected for a lease timeout.
        self._give_up: asyncio.TimerHandle | None = None
        self._limits = Limits()
        self._draining = False
        self._stopped = asyncio.Event()
        self._settled = asyncio.Event()
        self.connected = asyncio.Event()
        self._welcomed = False
        #: Outcomes acknowledged as durable since start (for tests and benchmarks).
        self.acked = 0

    # -- public control -------------------------------------------------------------

    @property
    def executing(self) -> set[str]:
        """Ids of the runs this worker is executing now (a run it was told to
        stop is not among them)."""
        return {execution.run_id for execution, _ in self._executions.values()}

    @property
    def draining(self) -> bool:
        """True once ``drain()`` was called."""
        return self._draining

    def drain(self) -> None:
        """Finish in-flight work, take no more, then stop."""
        if self._draining:
            return
        self._draining = True
        log.info("draining: finishing %d execution(s)", len(self._executions))
        self._control.append(ws.WorkerFrame(drain=ws.Drain()))
        self._wake_sender.set()
        self._check_settled()

    def stop(self) -> None:
        """Stop now; in-flight executions are dropped and will run elsewhere."""
        self._stopped.set()

    async def run(self) -> None:
        """Serve until drained or stopped, reconnecting as needed."""
        attempt = 0
        try:
            while not self._stopped.is_set():
                try:
                    await self._session()
                    attempt = 0
                    if self._draining:
                        return
                except (WorkerRejectedError, UnauthenticatedError, PermissionDeniedError):
                    raise
                except Exception as error:
                    code = getattr(error, "code", None)
                    if code == grpc.StatusCode.INVALID_ARGUMENT or isinstance(
                        error, InvalidArgumentError
                    ):
                        # What was sent broke the protocol: sending it again would
                        # too. Start clean.
                        self._drop_held()
                    if self._draining and not self._holds_work():
                        return
                    if self._welcomed:
                        # The connection was healthy before it broke: start over.
                        attempt = 0
                        self._welcomed = False
                        self._arm_give_up()
                    longest = RECONNECT_MAX_HOLDING_S if self._holds_work() else RECONNECT_MAX_S
                    delay = random.uniform(
                        RECONNECT_BASE_S / 2, min(longest, RECONNECT_BASE_S * 2**attempt)
                    )
                    attempt += 1
                    log.log(
                        logging.ERROR if code in _PROBLEM_CODES else logging.WARNING,
                        "connection to %s lost (%s); reconnecting in %.2f s",
                        self._connection().address,
                        _describe(error),
                        delay,
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopped.wait(), delay)
        finally:
            self._drop_held()
            self._threads.shutdown(wait=False, cancel_futures=True)

    # -- one connection ----------------------------------------------------------------

    async def _session(self) -> None:
        connection = self._connection()
        # A channel of its own for each session, closed when it ends, so that a
        # reconnect starts on a fresh connection.
        channel = connection.config.aio_channel()
        try:
            stub: ws_grpc.WorkerServiceAsyncStub = ws_grpc.WorkerServiceStub(channel)
            call = stub.Connect(metadata=connection.metadata)  # type: ignore[call-arg]
            await call.write(ws.WorkerFrame(hello=self._hello()))
            first = await call.read()
            if first is EOF:
                raise ConnectionLost("the control plane closed the stream before Welcome")
            assert isinstance(first, ws.ServerFrame)
            if first.WhichOneof("frame") == "rejected":
                if first.rejected.code == ws.REJECT_CODE_SHUTTING_DOWN:
                    raise ConnectionLost(first.rejected.reason)
                raise WorkerRejectedError(first.rejected.reason)
            welcome = first.welcome
            self._limits = Limits(
                max_step_output_bytes=welcome.limits.max_step_output_bytes
                or _DEFAULT_LIMITS.max_step_output_bytes,
                max_run_state_bytes=welcome.limits.max_run_state_bytes
                or _DEFAULT_LIMITS.max_run_state_bytes,
                max_steps_per_run=welcome.limits.max_steps_per_run
                or _DEFAULT_LIMITS.max_steps_per_run,
                max_frame_bytes=welcome.limits.max_frame_bytes or _DEFAULT_LIMITS.max_frame_bytes,
            )
            interval_s = (welcome.heartbeat_interval_ms or 3000) / 1000
            self._lease_timeout_s = (welcome.lease_timeout_ms or 15_000) / 1000
            self._heartbeat_interval_s = interval_s
            self._last_heard = time.monotonic()
            if self._give_up is not None:
                self._give_up.cancel()
                self._give_up = None
            log.info(
                "connected to %s as app %r (%d function(s), capacity %d, session %s)",
                connection.address,
                self.app_id,
                len(self._functions),
                self.capacity,
                welcome.session_id,
            )
            self.connected.set()
            self._welcomed = True
            # A new stream starts a new sequence of outcomes; what the last one
            # left unacknowledged goes first.
            self._next_seq = 1
            if self._outbox:
                self._wake_sender.set()
            tasks = [
                asyncio.create_task(self._read(call, interval_s), name="tether-read"),
                asyncio.create_task(self._send(call), name="tether-send"),
                asyncio.create_task(self._heartbeat(interval_s), name="tether-heartbeat"),
                asyncio.create_task(self._stopped.wait(), name="tether-stopped"),
            ]
            if self._draining:
                self._control.append(ws.WorkerFrame(drain=ws.Drain()))
                self._wake_sender.set()
            done_draining = asyncio.create_task(self._settled.wait(), name="tether-drained")
            tasks.append(done_draining)
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            if done_draining in done:
                with contextlib.suppress(grpc.RpcError):
                    await call.done_writing()
                log.info("drained; disconnecting")
                return
            for task in done:
                if task.cancelled():
                    continue
                error = task.exception()
                if error is not None:
                    raise error
            if self._stopped.is_set():
                return
            raise ConnectionLost("the control plane ended the stream")
        except grpc.RpcError as error:
            if self._welcomed:
                raise _stream_ended(error, connection.address) from None
            raise translate(error, connection.address) from None
        finally:
            self.connected.clear()
            # Executions go on; their outcomes wait for the next stream, after
            # those this one did not acknowledge.
            self._outbox = self._unacked + self._outbox
            self._unacked = []
            self._control.clear()
            await channel.close(grace=None)

    def _hello(self) -> ws.Hello:
        return ws.Hello(
            protocol_version=PROTOCOL_VERSION,
            app_id=self.app_id,
            instance_id=self.instance_id,
            sdk_language="python",
            sdk_version=__version__,
            functions=[f.definition() for f in self._functions.values()],
            capacity=self.capacity,
            held=[
                ws.HeldExecution(execution_id=execution_id, run_id=run_id)
                for execution_id, run_id in list(self._held().items())[:MAX_HELD]
            ],
        )

    def _held(self) -> dict[str, str]:
        """The executions this worker holds (execution id -> run id): those
        running, and those with outcomes not yet acknowledged."""
        held = {o.execution_id: o.run_id for o in self._outbox}
        held.update((e, execution.run_id) for e, (execution, _) in self._executions.items())
        return held

    def _holds_work(self) -> bool:
        return bool(self._executions or self._outbox or self._unacked)

    async def _read(self, call: Any, interval_s: float) -> None:
        silence = interval_s * SILENCE_INTERVALS
        while True:
            try:
                frame = await asyncio.wait_for(call.read(), silence)
            except TimeoutError:
                raise ConnectionLost(
                    f"no word from the control plane for {silence:.0f} s"
                ) from None
            if frame is EOF:
                raise ConnectionLost("the control plane closed the stream")
            self._last_heard = time.monotonic()
            kind = frame.WhichOneof("frame")
            if kind == "dispatch":
                for execute in frame.dispatch.executions:
                    self._start(execute)
            elif kind == "acks":
                self._on_acks(frame.acks)
            elif kind == "cancel":
                cancel = frame.cancel
                self._cancel(
                    cancel.execution_id, cancel.reason, let_step_finish=cancel.run_cancelled
                )
                if cancel.run_cancelled:
                    # Nothing of it starts from here on; the control plane waits for this.
                    ack = ws.CancelAck(execution_id=cancel.execution_id)
                    self._control.append(ws.WorkerFrame(cancel_ack=ack))
                    self._wake_sender.set()
            elif kind == "rejected":
                raise WorkerRejectedError(frame.rejected.reason)

    async def _send(self, call: Any) -> None:
        while True:
            await self._wake_sender.wait()
            self._wake_sender.clear()
            control, self._control = self._control, []
            for frame in control:
                await call.write(frame)
            outcomes, self._outbox = self._outbox, []
            self._number(outcomes)
            # Unacknowledged from the moment they are handed to the stream: if it
            # breaks mid-write, they are sent again.
            self._unacked.extend(outcomes)
            for chunk in _chunks(outcomes, self._limits.max_frame_bytes):
                await call.write(ws.WorkerFrame(outcomes=ws.Outcomes(outcomes=chunk)))

    def _number(self, outcomes: list[ws.Outcome]) -> None:
        """Give outcomes their seqs on this stream, as they are sent."""
        for outcome in outcomes:
            outcome.seq = self._next_seq
            self._next_seq += 1

    async def _heartbeat(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self._control.append(
                ws.WorkerFrame(heartbeat=ws.Heartbeat(execution_ids=list(self._executions)))
            )
            self._wake_sender.set()

    # -- executions ----------------------------------------------------------------------

    def _emit(self, outcome: ws.Outcome) -> None:
        self._outbox.append(outcome)  # numbered when sent
        self._wake_sender.set()

    def _start(self, execute: ws.Execute) -> None:
        function = self._functions.get(execute.function_id)
        if function is None:
            self._emit(
                ws.Outcome(
                    execution_id=execute.execution_id,
                    run_id=execute.run_id,
                    run_failed=ws.RunFailed(
                        error=error_info(
                            LookupError(
                                f"function {execute.function_id!r} is not served by this worker"
                            )
                        ),
                        retriable=True,
                    ),
                )
            )
            return
        execution = Execution(
            function,
            execute,
            self._emit,
            limits=self._limits,
            executor=self._threads,
            sender=self._send_events,
        )
        task = asyncio.create_task(execution.run(), name=f"tether-run-{execute.run_id}")
        self._executions[execute.execution_id] = (execution, task)
        task.add_done_callback(lambda t: self._finished(execute.execution_id, t))

    def _finished(self, execution_id: str, task: asyncio.Task[None]) -> None:
        entry = self._executions.pop(execution_id, None)
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            log.error("execution %s crashed", execution_id, exc_info=error)
            if entry is not None and not entry[0].stopped:
                # Report it rather than leave the run to be re-executed forever.
                execution = entry[0]
                execution.emit(
                    ws.Outcome(
                        run_failed=ws.RunFailed(
                            error=error_info(error or RuntimeError("crashed")), retriable=False
                        )
                    )
                )
                execution.finished = True
        self._check_settled()

    def _cancel(self, execution_id: str, reason: str, *, let_step_finish: bool = False) -> None:
        entry = self._executions.pop(execution_id, None)
        if entry is None:
            return
        execution, _ = entry
        log.info("run %s: execution stopped: %s", execution.run_id, reason)
        if let_step_finish:
            execution.cancel()
        else:
            execution.drop()
            self._outbox = [o for o in self._outbox if o.execution_id != execution_id]
        self._check_settled()

    def _on_acks(self, acks: ws.Acks) -> None:
        done = 0
        while done < len(self._unacked) and self._unacked[done].seq <= acks.through_seq:
            done += 1
        del self._unacked[:done]
        self.acked += done
        for refusal in acks.refused:
            self._cancel(refusal.execution_id, f"outcome refused: {refusal.reason}")
        self._check_settled()

    def _check_settled(self) -> None:
        if self._draining and not self._holds_work():
            self._settled.set()

    def _arm_give_up(self) -> None:
        """Drop what the worker holds unless a stream is back before its leases
        can have expired: a lease timeout after their last possible extension."""
        if self._give_up is None and self._holds_work():
            expiry = self._last_heard - self._heartbeat_interval_s + self._lease_timeout_s
            self._give_up = asyncio.get_running_loop().call_later(
                max(0.0, expiry - time.monotonic()), self._lease_timeout_passed
            )

    def _lease_timeout_passed(self) -> None:
        self._give_up = None
        if self.connected.is_set():
            return
        log.warning(
            "no control plane for the lease timeout (%.0f s): dropping %d execution(s); "
            "their runs go to another worker",
            self._lease_timeout_s,
            len(self._executions),
        )
        self._drop_held()

    def _drop_held(self) -> None:
        """Stop every execution and forget every outcome not yet acknowledged."""
        for execution, task in self._executions.values():
            execution.drop()
            task.cancel()
        self._executions.clear()
        self._outbox.clear()
        self._unacked.clear()
        if self._give_up is not None:
            self._give_up.cancel()
            self._give_up = None
        self._check_settled()


def _chunks(outcomes: list[ws.Outcome], max_bytes: int) -> list[list[ws.Outcome]]:
    """Split a batch so that no frame exceeds ``max_bytes`` (one outcome may)."""
    if not outcomes:
        return []
    chunks: list[list[ws.Outcome]] = [[]]
    size = 0
    budget = max(1024, max_bytes - 1024)
    for outcome in outcomes:
        outcome_size = outcome.ByteSize() + 8
        if chunks[-1] and size + outcome_size > budget:
            chunks.append([])
            size = 0
        chunks[-1].append(outcome)
        size += outcome_size
    return chunks


def _stream_ended(error: grpc.RpcError, address: str) -> Exception:
    """A status that ended an established stream, as the worker reports it: the
    control plane's code and sentence (for example UNAVAILABLE, "no word from
    the worker for 15012 ms; ..." when it fell silent)."""
    code_of = getattr(error, "code", None)
    details_of = getattr(error, "details", None)
    code = code_of() if callable(code_of) else grpc.StatusCode.UNKNOWN
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return translate(error, address)
    details = (details_of() if callable(details_of) else "") or "no details"
    return ConnectionLost(f"the stream ended with status {code.name}: {details}", code)


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__
