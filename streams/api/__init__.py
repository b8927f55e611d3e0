"""The worker's HTTP API, declared once and described by the OpenAPI document at ``/openapi.json``:
subscriptions and delivery recovery, disputes, and what is known about members and providers.
Every route that returns member data needs an organization's API token and is scoped by it."""
from __future__ import annotations

from streams.api import disputes, members, subscriptions
from streams.api.routes import Api
from streams.pipeline import Pipeline


def build_api(p: Pipeline) -> Api:
    api = Api("gapstream", "1")
    for module in (subscriptions, disputes, members):
        module.add_routes(api, p)
    return api


def register(p: Pipeline) -> None:
    build_api(p).mount(p.app, p.store.subscriptions)
