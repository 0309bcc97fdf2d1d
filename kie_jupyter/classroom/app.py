"""The class proxy's ASGI app: the student routes, the teacher page, and a clear 404 for
everything else (it is not an open proxy)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from .forward import ClassProxy, refusal
from .guard import BadTokenGuard
from .teacher import TeacherPage

__all__ = ["build_app"]


async def _index(request: Request) -> Response:
    return PlainTextResponse(
        "kie-jupyter class proxy.\nStudents: %kie4o class <this URL> in a notebook.\n"
        "Teacher: /teacher\n")


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        return refusal(404, f"the class proxy does not forward {request.method} "
                            f"{request.url.path}")
    if status == 405:
        return refusal(405, f"{request.method} is not used on {request.url.path}")
    return refusal(status, "the class proxy could not handle this request")


def build_app(proxy: ClassProxy, *, prefix: str = "",
              teacher_guard: BadTokenGuard | None = None) -> Starlette:
    """The app for ``proxy``, served under ``prefix`` (a JupyterHub service's
    ``JUPYTERHUB_SERVICE_PREFIX``) when given; ``teacher_guard`` paces wrong teacher tokens
    (default: the teacher page's own, 2 a second)."""
    teacher = TeacherPage(proxy.ledger, guard=teacher_guard)
    routes: list[BaseRoute] = [
        Route("/", _index, methods=["GET"]),
        Route("/class/me", proxy.me, methods=["GET"]),
        Route("/api/v1/{rest:path}", proxy.api, methods=["GET", "POST"]),
        Route("/upload/{rest:path}", proxy.upload, methods=["GET", "POST"]),
        Route("/teacher", teacher.dashboard, methods=["GET"]),
        Route("/teacher/login", teacher.login, methods=["GET", "POST"]),
        Route("/teacher/quota", teacher.quota, methods=["POST"]),
        Route("/teacher/credits", teacher.credits, methods=["POST"]),
        Route("/teacher/revoke", teacher.revoke, methods=["POST"]),
        Route("/teacher/restore", teacher.restore, methods=["POST"]),
        Route("/teacher/reissue", teacher.reissue, methods=["POST"]),
        Route("/teacher/pause", teacher.pause, methods=["POST"]),
        Route("/teacher/logout", teacher.logout, methods=["POST"]),
        Route("/teacher/use.csv", teacher.use_csv, methods=["GET"]),
        Route("/teacher/spend.csv", teacher.spend_csv, methods=["GET"]),
        Route("/teacher/actions.csv", teacher.actions_csv, methods=["GET"]),
    ]
    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    if prefix:
        routes = [Mount(prefix, routes=routes)]

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        await proxy.start()
        try:
            yield
        finally:
            await proxy.stop()

    return Starlette(routes=routes, lifespan=lifespan,
                     exception_handlers={HTTPException: _http_error})
