"""A control plane (with HTTP) and a worker of the shop app, as real processes:
what the browser tests drive. Run it by hand to look at the UI::

    .venv/bin/python -m tests.browser.cluster      # prints the URL; Ctrl-C stops it
"""

from __future__ import annotations

import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.support.http import Http
from tests.support.processes import ControlPlaneProcess, WorkerProcess
from tests.support.waiting import wait_until

SHOP_APP = "tests.browser.apps.shop:app"
SHOP_FUNCTIONS = {
    "process-order",
    "sync-inventory",
    "abandoned-cart",
    "issue-refund",
    "nightly-report",
}


class ShopCluster:
    """A control plane on SQLite in ``workdir`` and one shop worker. With
    ``api_key``, the control plane is started with ``--api-key`` (an admin key),
    and the worker and ``http`` use it."""

    def __init__(self, workdir: Path, *, api_key: str = "") -> None:
        self.workdir = workdir
        self.api_key = api_key
        self.control_plane = ControlPlaneProcess(
            f"sqlite:///{workdir / 'tether.db'}",
            workdir,
            http=True,
            extra_args=["--api-key", api_key] if api_key else [],
        )
        self.worker: WorkerProcess | None = None

    @property
    def url(self) -> str:
        return self.control_plane.http_url

    @property
    def db_url(self) -> str:
        return self.control_plane.db_url

    @property
    def http(self) -> Http:
        return Http(self.url, self.api_key)

    def start(self) -> ShopCluster:
        self.control_plane.start()
        self.worker = self._start_worker()
        wait_until(self._worker_ready, timeout=30, what="the shop worker to connect")
        return self

    def _start_worker(self) -> WorkerProcess:
        env = {"TETHER_API_KEY": self.api_key} if self.api_key else None
        return WorkerProcess(SHOP_APP, self.control_plane.address, self.workdir, env=env).start()

    def stop_worker(self) -> None:
        """SIGKILL the worker (its functions stay registered, with no worker)."""
        if self.worker is not None:
            self.worker.kill()

    def restart_worker(self) -> None:
        self.stop_worker()
        self.worker = self._start_worker()
        wait_until(self._worker_ready, timeout=30, what="the shop worker to reconnect")

    def _worker_ready(self) -> bool:
        functions = self.http.get("/api/functions?app_id=shop")["functions"]
        connected = {f["id"] for f in functions if f["connected_workers"] > 0}
        return connected >= SHOP_FUNCTIONS

    def send(self, name: str, data: dict[str, Any]) -> dict[str, Any]:
        """Send one event through the API; returns its send result."""
        [result] = self.http.post("/api/events", {"name": name, "data": data})["results"]
        return dict(result)

    def seed(self) -> None:
        """A few runs of every kind, so that lists have something to show."""
        self.send("shop/order.placed", {"order_id": 1001, "items": ["tea", "cup"]})
        self.send("shop/order.placed", {"order_id": 1002, "card": "declined"})
        self.send("shop/cart.abandoned", {"cart_id": 77})
        self.send("shop/refund.requested", {"order_id": 990, "amount": 0})
        self.send("shop/refund.requested", {"order_id": 991, "amount": 12.5})
        self.send("shop/inventory.sync", {"supplier": "acme"})

    def logs(self) -> str:
        worker = self.worker.logs() if self.worker is not None else ""
        return f"--- control plane ---\n{self.control_plane.logs()}\n--- worker ---\n{worker}"

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.kill()
        self.control_plane.stop()


def main() -> None:
    cluster = ShopCluster(Path(tempfile.mkdtemp(prefix="tether-ui-"))).start()
    cluster.seed()
    print(f"Tether UI: {cluster.url}  (workdir {cluster.workdir})", flush=True)
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        cluster.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
