"""Error answers of the HTTP side that do not come from the engine: a request
FastAPI could not read, a path or method that does not exist, a failure nobody
expected. Each is a ``Problem`` body with a sentence, never a bare
``{"detail": ...}``, a Python class name or a traceback."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from controlplane.http.schemas import Problem

log = logging.getLogger("tether.http")

_CODES = {
    400: "invalid_argument",
    401: "unauthenticated",
    404: "not_found",
    405: "method_not_allowed",
    413: "limit_exceeded",
    415: "invalid_argument",
    422: "invalid_argument",
}


def problem(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        Problem(error=code, message=message).model_dump(), status_code=status, headers=headers
    )


def invalid_request(error: RequestValidationError) -> JSONResponse:
    """A body, path or query parameter that does not validate: every problem,
    each named by where it is (``name``, ``[1].data``, ``query.limit``)."""
    return problem(400, "invalid_argument", validation_message(error.errors(), error.body))


def validation_message(errors: Sequence[Any], body: object) -> str:
    items = _one_union_member(list(errors), body)
    problems = []
    for item in items:
        if item.get("type") == "json_invalid":
            reason = (item.get("ctx") or {}).get("error") or "it does not parse"
            position = _body_location(item.get("loc", ()))
            at = f" at character {position}" if position else ""
            problems.append(f"the body is not valid JSON: {reason}{at}")
            continue
        where = _where(item.get("loc", ()))
        problems.append(f"{where or 'body'}: {item.get('msg', 'invalid')}")
    return "; ".join(problems) or "the request is not valid"


def _one_union_member(errors: list[Any], body: object) -> list[Any]:
    """A body that may be one item or a list of them (``EventIn | list[EventIn]``)
    fails both ways; report only the way its shape asked for."""
    tags = {loc[1] for item in errors if len(loc := item.get("loc", ())) > 1 and loc[0] == "body"}
    if len(tags) < 2 or not all(isinstance(t, str) and _is_type_name(t) for t in tags):
        return errors
    wanted = next((t for t in tags if t.startswith("list[") == isinstance(body, list)), None)
    if wanted is None:
        return errors
    kept = [item for item in errors if tuple(item.get("loc", ()))[1:2] == (wanted,)]
    return [{**item, "loc": (item["loc"][0], *item["loc"][2:])} for item in kept]


def _is_type_name(part: str) -> bool:
    # Field names are snake_case; pydantic tags a union member with its type.
    return "[" in part or part[:1].isupper()


def _body_location(loc: Iterable[object]) -> int:
    parts = [part for part in loc if part != "body"]
    return parts[0] if parts and isinstance(parts[0], int) else 0


def _where(loc: Iterable[object]) -> str:
    text = ""
    for part in loc:
        if part == "body":
            continue
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def http_error(request: Request, error: HTTPException) -> JSONResponse:
    """Starlette's and FastAPI's own refusals (no such path, a method the path
    does not take, a body that could not be read)."""
    status = error.status_code
    code = _CODES.get(status, "internal" if status >= 500 else "invalid_argument")
    where = f"{request.method} {request.url.path}"
    if status == 404:
        message = f"no such path: {where} (/api/openapi.json lists the API's paths)"
    elif status == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    elif status == 400 and error.detail == "There was an error parsing the body":
        message = "the body is not valid JSON: it does not decode as UTF-8 JSON text"
    elif isinstance(error.detail, str) and error.detail:
        message = error.detail
    else:
        message = _phrase(status) or f"{where} answered {status}"
    return problem(status, code, message, headers=dict(error.headers or {}) or None)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def unexpected(request: Request, error: Exception) -> JSONResponse:
    """A failure of the control plane itself: 500, a sentence; the log has the rest."""
    where = f"{request.method} {request.url.path}"
    log.error("%s failed unexpectedly", where, exc_info=error)
    return problem(
        500, "internal", f"the control plane failed while handling {where}; its log has the details"
    )
