"""Declaring HTTP routes once: each handler is registered on the worker's web server and described
in the OpenAPI document from the same declaration, so the document cannot miss a route.

Authentication is by organization API token (``Authorization: Bearer gst_...``). A handler states
the role it needs: any organization (its own data only), or the plan-level role.
"""
from __future__ import annotations

import asyncio
import json
import re
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.web import Request, Response, View
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import best_match

from sinks.sql.attribution import DisputeError
from sinks.sql.models import Organization
from sinks.sql.subscriptions import NotFound, SubscriptionError, SubscriptionStore


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Call:
    """One request as a handler sees it: who asks, the path parameters, the query and the body."""
    organization: Organization | None
    params: dict[str, str]
    query: dict[str, str]
    body: dict[str, Any]


@dataclass(frozen=True)
class Text:
    """A non-JSON answer (CSV)."""
    content: str
    content_type: str


Handler = Callable[[Call], Awaitable[tuple[int, Any]]]


def run(fn: Callable, *args: Any) -> Awaitable[Any]:
    """A store call, off the event loop (the stores are synchronous)."""
    return asyncio.to_thread(fn, *args)


def table_row(obj: Any) -> dict[str, Any]:
    """A stored row as JSON: its columns by name."""
    return {c.key: getattr(obj, c.key) for c in obj.__table__.columns}


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    summary: str
    handler: Handler
    role: str | None  # None (public) | organization | plan
    request: dict[str, Any] | None = None  # JSON schema of the body
    query: tuple[str, ...] = ()
    responses: dict[int, str] = field(default_factory=dict)


class Api:
    def __init__(self, title: str, version: str):
        self.title, self.version = title, version
        self.routes: list[Route] = []

    def route(self, method: str, path: str, summary: str, role: str | None = "organization",
              request: dict[str, Any] | None = None, query: tuple[str, ...] = (),
              responses: dict[int, str] | None = None) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            # Closed unless a route says otherwise: a misspelt field is an error, not silently ignored.
            body = {"additionalProperties": False, **request} if request else None
            self.routes.append(Route(method, path, summary, handler, role, body, query, responses or {200: "OK"}))
            return handler
        return register

    def mount(self, app: faust.App, subscriptions: SubscriptionStore) -> None:
        by_path: dict[str, dict[str, Route]] = defaultdict(dict)
        for r in self.routes:
            by_path[r.path][r.method] = r
        for path, methods in by_path.items():
            handlers = {m: _view_method(r, subscriptions) for m, r in methods.items()}
            app.page(path)(type("View" + re.sub(r"\W+", "_", path), (View,), handlers))

    def openapi(self) -> dict[str, Any]:
        paths: dict[str, dict[str, Any]] = defaultdict(dict)
        for r in self.routes:
            op: dict[str, Any] = {
                "summary": r.summary,
                "operationId": r.handler.__name__,
                "parameters": [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                               for n in re.findall(r"{(\w+)}", r.path)]
                + [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}} for n in r.query],
                "responses": {str(code): {"description": text} for code, text in r.responses.items()}
                | {"400": {"description": "The request cannot be carried out; `error` says why"}},
            }
            if r.role:
                op["security"] = [{"token": []}]
                op["responses"] |= {"401": {"description": "No valid API token"},
                                    "404": {"description": "Not found, or not this organization's"}}
            if r.role == "plan":
                op["responses"]["403"] = {"description": "The plan-level role is required"}
            if r.request:
                op["requestBody"] = {"required": True, "content": {"application/json": {"schema": r.request}}}
            paths[r.path][r.method] = op
        return {"openapi": "3.1.0", "info": {"title": self.title, "version": self.version},
                "components": {"securitySchemes": {"token": {"type": "http", "scheme": "bearer",
                                                             "description": "An organization's API token"}}},
                "paths": dict(paths)}


def _view_method(route: Route, subscriptions: SubscriptionStore) -> Callable:
    # The schema the OpenAPI document declares is the one enforced.
    validator = Draft202012Validator(route.request, format_checker=FormatChecker()) if route.request else None

    async def method(view: View, request: Request, **params: str) -> Response:
        try:
            organization = await _authenticate(request, route.role, subscriptions)
            body: dict[str, Any] = {}
            if validator is not None:
                body = await _json_body(request)
                if error := best_match(validator.iter_errors(body)):
                    where = "/".join(str(part) for part in error.absolute_path) or "the body"
                    raise ApiError(400, f"the request body is not valid: {where}: {error.message}")
            status, payload = await route.handler(Call(organization, params, dict(request.query), body))
        except ApiError as exc:
            status, payload = exc.status, {"error": str(exc)}
        except NotFound as exc:
            status, payload = 404, {"error": str(exc)}
        except (SubscriptionError, DisputeError) as exc:
            status, payload = 400, {"error": str(exc)}
        if isinstance(payload, Text):
            return view.text(payload.content, content_type=payload.content_type, status=status)
        return view.json(payload, status=status)
    method.__name__ = route.method
    return method


async def _authenticate(request: Request, role: str | None, subscriptions: SubscriptionStore) -> Organization | None:
    if role is None:
        return None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "an API token is required: Authorization: Bearer <token>")
    organization = await asyncio.to_thread(subscriptions.authenticate, token.strip())
    if organization is None:
        raise ApiError(401, "the API token is not valid")
    if role == "plan" and not organization.plan_level:
        raise ApiError(403, "this needs the plan-level role")
    return organization


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, "the request body must be JSON") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return data
