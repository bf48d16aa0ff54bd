"""The JSON HTTP API behind the dev UI, over real HTTP, against a real control
plane and worker processes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.conftest import Cluster
from tests.support.http import Http
from tests.support.waiting import wait_until


def _http(cluster: Cluster) -> Http:
    return Http(cluster.control_plane.http_url)


def _finished(http: Http, run_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        detail: dict[str, Any] = http.get(f"/api/runs/{run_id}")
        ended = detail["run"]["status"] in ("completed", "failed", "cancelled")
        return detail if ended else None

    detail = wait_until(done, what=f"run {run_id} to finish")
    assert detail is not None
    return detail


@pytest.fixture
def served(cluster_factory: Callable[..., Cluster]) -> Cluster:
    """A control plane with HTTP on a virtual clock and a worker of the durable app."""
    cluster = cluster_factory(clock="virtual", http=True)
    cluster.worker()
    wait_until(lambda: cluster.admin.connected("flaky"), what="the worker")
    return cluster


def test_functions_show_triggers_options_and_workers(served: Cluster) -> None:
    http = _http(served)
    functions = {f["id"]: f for f in http.get("/api/functions")["functions"]}
    flaky = functions["flaky"]
    assert flaky["app_id"] == "durable"
    assert flaky["triggers"] == [
        {
            "type": "event",
            "event": "test/flaky",
            "if_expression": "",
            "cron": "",
            "timezone": "",
            "catch_up": "",
            "next_fire_ms": 0,
        }
    ]
    assert flaky["options"]["retries"] == 4
    assert flaky["connected_workers"] == 1
    assert flaky["paused"] is None

    served.workers[0].terminate()
    wait_until(
        lambda: all(f["connected_workers"] == 0 for f in http.get("/api/functions")["functions"]),
        what="the workers to be gone from the listing",
    )


def test_a_sent_event_starts_a_run_whose_timeline_shows_each_attempt(served: Cluster) -> None:
    http = _http(served)
    [result] = http.post("/api/events", {"name": "test/flaky", "data": {"fail_times": 2}})[
        "results"
    ]
    [run_id] = result["run_ids"]
    detail = _finished(http, run_id)
    assert detail["run"]["status"] == "completed"
    assert detail["run"]["output"] == {"middle": "ok"}
    assert len(detail["run"]["trace_id"]) == 32
    assert [e["name"] for e in detail["events"]] == ["test/flaky"]

    bars = detail["timeline"]
    assert [(b["name"], b["attempt"], b["status"]) for b in bars] == [
        ("first", 0, "completed"),
        ("middle", 0, "failed"),
        ("middle", 1, "failed"),
        ("middle", 2, "completed"),
        ("last", 0, "completed"),
    ]
    for bar in bars:
        assert 0 < bar["started_at_ms"] <= bar["ended_at_ms"]
    failed = [b for b in bars if b["status"] == "failed"]
    assert all(b["error"]["name"] == "ConnectionError" for b in failed)
    assert all(b["retry_at_ms"] >= b["ended_at_ms"] for b in failed)
    assert [b["started_at_ms"] for b in bars] == sorted(b["started_at_ms"] for b in bars)

    listed = http.get("/api/runs?function_id=flaky&status=completed")["runs"]
    assert [r["id"] for r in listed] == [run_id]
    assert http.get("/api/runs?function_id=flaky&status=failed,cancelled")["runs"] == []

    events = http.get("/api/events?name=test/flaky")["events"]
    assert [e["id"] for e in events] == [result["event_id"]]
    assert events[0]["data"] == {"fail_times": 2}
    started = http.get(f"/api/events/{result['event_id']}")
    assert [r["id"] for r in started["runs"]] == [run_id]


def test_a_sleep_is_a_bar_as_long_as_the_sleep(served: Cluster) -> None:
    http = _http(served)
    [result] = http.post("/api/events", {"name": "test/napper", "data": {"seconds": 3600}})[
        "results"
    ]
    detail = _finished(http, result["run_ids"][0])
    [nap] = [b for b in detail["timeline"] if b["kind"] == "sleep"]
    assert nap["name"] == "nap"
    assert nap["status"] == "completed"
    assert nap["until_ms"] - nap["started_at_ms"] == 3_600_000
    assert nap["ended_at_ms"] >= nap["until_ms"]


def test_invoke_starts_a_run_with_the_data_given(served: Cluster) -> None:
    http = _http(served)
    invoked = http.post("/api/functions/durable/napper/invoke", {"data": {"seconds": 1}})
    detail = _finished(http, invoked["run_id"])
    assert detail["run"]["status"] == "completed"
    assert detail["run"]["output"] == "rested"
    [event] = detail["events"]
    assert event["name"] == "tether/function.invoked"
    assert event["data"] == {"seconds": 1}
    assert event["id"] == invoked["event_id"]

    missing = http.request("POST", "/api/functions/durable/nope/invoke", {"data": {}})
    assert missing.status == 404
    assert missing.json() == {
        "error": "not_found",
        "message": "function 'nope' of app 'durable' not found",
    }
    not_an_object = http.request("POST", "/api/functions/durable/napper/invoke", {"data": [1]})
    assert not_an_object.status == 400
    assert "data" in not_an_object.json()["message"]


def test_cancel_and_replay(cluster_factory: Callable[..., Cluster]) -> None:
    cluster = cluster_factory(http=True)
    cluster.worker(TETHER_TEST_BLOCK="1")
    wait_until(lambda: cluster.admin.connected("gated"), what="the worker")
    http = _http(cluster)
    [result] = http.post("/api/events", {"name": "test/gated"})["results"]
    run_id = result["run_ids"][0]
    wait_until(
        lambda: any(s["name"] == "one" for s in http.get(f"/api/runs/{run_id}")["steps"]),
        what="the first step",
    )

    cancelled = http.post(f"/api/runs/{run_id}/cancel", {"reason": "from the test"})["run"]
    assert cancelled["status"] == "cancelled"
    assert http.get(f"/api/runs/{run_id}")["run"]["status"] == "cancelled"
    again = http.request("POST", f"/api/runs/{run_id}/cancel", {})
    assert again.status == 409
    assert run_id in again.json()["message"]

    replay = http.post(f"/api/runs/{run_id}/replay", {"mode": "from_start"})["run"]
    assert replay["replay_of"] == run_id
    assert replay["id"] != run_id
    assert replay["function_id"] == "gated"
    listed = {r["id"] for r in http.get("/api/runs?function_id=gated")["runs"]}
    assert listed == {run_id, replay["id"]}


def test_pause_and_resume_through_the_api(served: Cluster) -> None:
    http = _http(served)
    paused = http.post("/api/functions/durable/napper/pause", {"mode": "skip"})["function"]
    assert paused["paused"] == "skip"
    [result] = http.post("/api/events", {"name": "test/napper"})["results"]
    assert result["run_ids"] == []
    assert [s["function_id"] for s in result["skipped"]] == ["napper"]
    resumed = http.post("/api/functions/durable/napper/resume")
    assert resumed["function"]["paused"] is None
    assert resumed["released"] == 0


def test_bad_requests_name_the_problem(served: Cluster) -> None:
    http = _http(served)
    unknown_run = http.request("GET", "/api/runs/01NOPE")
    assert unknown_run.status == 404
    assert unknown_run.json()["message"] == "run '01NOPE' not found"

    bad_status = http.request("GET", "/api/runs?status=done")
    assert bad_status.status == 400
    assert "unknown run status 'done'" in bad_status.json()["message"]

    bad_name = http.request("POST", "/api/events", {"name": "", "data": {}})
    assert bad_name.status == 400
    assert "name" in bad_name.json()["message"]

    oversized = http.request(
        "POST", "/api/events", {"name": "test/big", "data": {"x": "a" * 600_000}}
    )
    assert oversized.status == 413
    assert "512 KiB" in oversized.json()["message"]

    not_json = http.request("POST", "/api/events", None)
    assert not_json.status == 400

    bad_token = http.request("GET", "/api/runs?page_token=zzz")
    assert bad_token.status == 400
    assert "page_token is not one this server issued" in bad_token.json()["message"]


def test_health_and_openapi(served: Cluster) -> None:
    http = _http(served)
    assert http.get("/healthz") == {"status": "serving"}
    spec = http.get("/api/openapi.json")
    assert spec["info"]["title"] == "Tether"
    for path in (
        "/api/functions",
        "/api/functions/{app_id}/{function_id}/invoke",
        "/api/events",
        "/api/events/{event_id}",
        "/api/runs",
        "/api/runs/{run_id}",
        "/api/runs/{run_id}/cancel",
        "/api/runs/{run_id}/replay",
    ):
        assert path in spec["paths"], path
    metrics = http.request("GET", "/metrics")
    assert metrics.status == 200
    assert metrics.content_type.startswith("text/plain")
    assert (
        'tether_workers_connected{tether_app_id="durable",tether_environment="default"} 1.0'
        in metrics.body.decode()
    )
    index = http.request("GET", "/")
    assert index.status == 200
    assert index.content_type.startswith("text/html")


def test_api_keys_guard_the_api(cluster_factory: Callable[..., Cluster]) -> None:
    cluster = cluster_factory(http=True, extra_args=["--api-key", "s3cret"])
    anonymous = Http(cluster.control_plane.http_url)
    refused = anonymous.request("GET", "/api/runs")
    assert refused.status == 401
    assert "Bearer" in refused.json()["message"]
    assert anonymous.get("/healthz") == {"status": "serving"}
    assert Http(cluster.control_plane.http_url, token="s3cret").get("/api/runs") == {
        "runs": [],
        "next_page_token": "",
    }
