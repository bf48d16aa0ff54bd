"""Synchronous RunService/EventService calls for tests that drive real processes."""

from __future__ import annotations

import json
from typing import Any

from tests.support.channels import channel
from tether.v1 import common_pb2, event_service_pb2, event_service_pb2_grpc, run_service_pb2_grpc
from tether.v1 import run_service_pb2 as rs

FINISHED = {
    common_pb2.RUN_STATUS_COMPLETED,
    common_pb2.RUN_STATUS_FAILED,
    common_pb2.RUN_STATUS_CANCELLED,
}


class Admin:
    def __init__(self, address: str, api_key: str | None = None) -> None:
        self.address = address
        self.channel = channel(address, api_key)
        self.runs = run_service_pb2_grpc.RunServiceStub(self.channel)
        self.events = event_service_pb2_grpc.EventServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def send(self, name: str, data: dict[str, Any] | None = None, event_id: str = "") -> list[str]:
        """Send one event; returns the ids of the runs it started."""
        event = common_pb2.Event(id=event_id, name=name, data=json.dumps(data or {}).encode())
        response = self.events.Send(event_service_pb2.SendRequest(events=[event]))
        return list(response.results[0].run_ids)

    def send_many(self, events: list[tuple[str, dict[str, Any]]]) -> list[str]:
        request = event_service_pb2.SendRequest(
            events=[common_pb2.Event(name=n, data=json.dumps(d).encode()) for n, d in events]
        )
        response = self.events.Send(request)
        return [run_id for result in response.results for run_id in result.run_ids]

    def get(self, run_id: str) -> rs.GetRunResponse:
        return self.runs.GetRun(rs.GetRunRequest(run_id=run_id))

    def status(self, run_id: str) -> int:
        return self.get(run_id).run.status

    def finished(self, run_id: str) -> rs.GetRunResponse | None:
        response = self.get(run_id)
        return response if response.run.status in FINISHED else None

    def output(self, run_id: str) -> Any:
        raw = self.get(run_id).run.output
        return json.loads(raw) if raw else None

    def workers_of(self, app_id: str) -> list[int]:
        """How many workers serve each registered function of ``app_id``."""
        request = rs.ListFunctionsRequest(app_id=app_id)
        return [f.connected_workers for f in self.runs.ListFunctions(request).functions]

    def runs_of(self, function_id: str) -> list[rs.Run]:
        """Every run of ``function_id``, newest first."""
        request = rs.ListRunsRequest(function_id=function_id, page_size=1000)
        return list(self.runs.ListRuns(request).runs)

    def functions(self) -> list[rs.FunctionInfo]:
        return list(self.runs.ListFunctions(rs.ListFunctionsRequest()).functions)

    def connected(self, function_id: str) -> bool:
        return any(
            f.definition.id == function_id and f.connected_workers > 0 for f in self.functions()
        )
