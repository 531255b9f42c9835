"""API errors: ``{"error", "code"}`` bodies, and the one map from the
supervisor's errors to an HTTP status and code."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from headrace.server.auth import AuthError
from headrace.server.limits import BodyTimeout, BodyTooLarge
from headrace.supervisor.client import OpFailed, WorkerUnavailable
from headrace.supervisor.supervisor import DeployError

__all__ = ["ApiError", "error_response", "handler", "internal_error", "json_response", "supervisor_error"]

log = logging.getLogger("headrace.server")


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.extra = extra


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data, default=str), status_code=status, media_type="application/json")


def error_response(status: int, message: str, code: str, **extra: Any) -> Response:
    return json_response({"error": message, "code": code, **extra}, status)


#: Worker op failures that are the caller's fault; every other one is a conflict.
_BAD_REQUEST_OPS = ("unknown_accumulator", "bad_request")


def supervisor_error(e: Exception, graph: str, timeout: float) -> ApiError:
    """The API's answer to an error the supervisor or a worker raised."""
    if isinstance(e, OpFailed):
        return ApiError(400 if e.code in _BAD_REQUEST_OPS else 409, str(e), e.code)
    if isinstance(e, WorkerUnavailable):
        return ApiError(503, str(e), "unavailable")
    if isinstance(e, TimeoutError):
        return ApiError(504, f"graph '{graph}' did not answer within {timeout:g} s", "timeout")
    if isinstance(e, DeployError):
        return ApiError(e.status, str(e), e.code, problems=e.problems)
    raise TypeError(f"not a supervisor error: {e!r}") from e


def internal_error(request: Request, e: BaseException) -> Response:
    """An unexpected exception: logged with its traceback, answered as JSON
    with a code (never a bare 500 page)."""
    log.error("%s %s failed", request.method, request.url.path, exc_info=e)
    return error_response(500, f"internal error ({type(e).__name__}); the server log has the details", "internal")


def handler(fn: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    async def wrapped(request: Request) -> Response:
        try:
            return await fn(request)
        except AuthError as e:
            return error_response(e.status, str(e), e.code)
        except ApiError as e:
            return error_response(e.status, str(e), e.code, **e.extra)
        except BodyTooLarge as e:
            return error_response(413, str(e), "too_large")
        except BodyTimeout as e:
            return error_response(408, str(e), "body_timeout")
        except HTTPException as e:
            # Starlette's own (e.g. a malformed or oversized multipart form).
            code = "too_large" if e.status_code == 413 else "bad_request"
            return error_response(e.status_code, str(e.detail), code)
        except Exception as e:
            return internal_error(request, e)

    return wrapped
