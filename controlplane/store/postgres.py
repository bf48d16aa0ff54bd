"""PostgreSQL (psycopg 3): the store several control planes can share.

Control planes sharing the database tell each other about changes with
LISTEN/NOTIFY on one channel: a payload ``<node id>:<kind>`` where kind is
``work`` (something may be due or a concurrency slot freed: look for work) or
``functions`` (functions were registered: reload them). Each node ignores its
own notifications.

An environment other than the default keeps its tables in a schema of its own
(``search_path`` is set on every connection) and notifies on a channel of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable

import psycopg
from sqlalchemy import Engine, Insert, Table, create_engine, make_url
from sqlalchemy.dialects.postgresql import insert as pg_insert

from controlplane.model.ids import new_hex_id
from controlplane.store.base import Store

log = logging.getLogger(__name__)

CHANNEL = "tether_changes"
# Notifications sent back to back are coalesced within this interval.
_COALESCE_S = 0.002
_RECONNECT_S = 1.0
_SERVER_GOING_AWAY = frozenset({"57P01", "57P02", "57P03"})


class PostgresStore(Store):
    dialect = "postgresql"
    shared = True

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        readers: int = 4,
        hold_window_s: float = 30.0,
    ) -> None:
        self.schema = schema
        self.channel = CHANNEL if schema is None else f"{CHANNEL}_{schema}"
        super().__init__(url, readers=readers, hold_window_s=hold_window_s)
        self.node_id = new_hex_id(8)
        self._conninfo = (
            make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        )
        self._wanted: set[str] = set()
        self._wanted_changed = threading.Condition()
        self._closing = False
        self._threads: list[threading.Thread] = []

    def _create_engine(self, url: str) -> Engine:
        connect_args = {} if self.schema is None else {"options": f"-csearch_path={self.schema}"}
        return create_engine(
            url, pool_size=8, max_overflow=4, pool_pre_ping=True, connect_args=connect_args
        )

    def insert(self, table: Table) -> Insert:
        return pg_insert(table)

    def is_outage(self, error: Exception) -> bool:
        if super().is_outage(error):
            return True
        cause = getattr(error, "orig", error)
        if not isinstance(cause, psycopg.OperationalError):
            return False
        # No SQLSTATE: the server could not be reached at all. Class 08: the
        # connection failed; 57P01-57P03: the server is shutting down or starting.
        state = cause.sqlstate
        return state is None or state.startswith("08") or state in _SERVER_GOING_AWAY

    # -- node-to-node notifications ------------------------------------------------

    def announce(self, kind: str = "work") -> None:
        with self._wanted_changed:
            self._wanted.add(kind)
            self._wanted_changed.notify()

    def listen(self, on_change: Callable[[str], None]) -> None:
        """Call ``on_change(kind)`` on the running event loop whenever another
        control plane announces a change; also start sending our own."""
        loop = asyncio.get_running_loop()

        def deliver(kind: str) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed
                loop.call_soon_threadsafe(on_change, kind)

        for target, name in (
            (self._send_loop, "sender"),
            (lambda: self._listen_loop(deliver), "listener"),
        ):
            thread = threading.Thread(target=target, name=f"tether-notify-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _send_loop(self) -> None:
        conn: psycopg.Connection[tuple[object, ...]] | None = None
        while True:
            with self._wanted_changed:
                while not self._wanted and not self._closing:
                    self._wanted_changed.wait()
                if self._closing:
                    break
                kinds, self._wanted = self._wanted, set()
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self._conninfo, autocommit=True)
                for kind in sorted(kinds):
                    conn.execute(
                        "SELECT pg_notify(%s, %s)", (self.channel, f"{self.node_id}:{kind}")
                    )
            except psycopg.Error as error:
                self._notification_failed("could not notify other control planes", error)
                conn = None
                time.sleep(_RECONNECT_S)
            time.sleep(_COALESCE_S)
        if conn is not None:
            conn.close()

    def _listen_loop(self, deliver: Callable[[str], None]) -> None:
        while not self._closing:
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {self.channel}")
                    # Anything may have changed while we were not listening.
                    deliver("functions")
                    while not self._closing:
                        for notice in conn.notifies(timeout=0.5):
                            node, _, kind = notice.payload.partition(":")
                            if node != self.node_id:
                                deliver(kind)
            except psycopg.Error as error:
                if self._closing:
                    break
                self._notification_failed("lost the notification connection; reconnecting", error)
                time.sleep(_RECONNECT_S)

    def _notification_failed(self, what: str, error: psycopg.Error) -> None:
        # During an outage availability has said it once; say nothing per retry.
        if self.is_outage(error):
            self.availability.failed(error)
            log.debug("%s: %s", what, error)
        else:
            log.warning("%s: %s", what, error)

    async def close(self) -> None:
        with self._wanted_changed:
            self._closing = True
            self._wanted_changed.notify()
        for thread in self._threads:
            await asyncio.to_thread(thread.join, 5.0)
        await super().close()
