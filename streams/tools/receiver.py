"""A local webhook receiver, the way a provider system would take gapstream's alerts: it verifies
each Standard Webhooks signature, ignores a ``webhook-id`` it has already accepted, and prints one
JSON line per accepted alert with its end-to-end latency. It prints no member identifiers."""
from __future__ import annotations

import json
import sys
import time
from typing import TextIO

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def make_app(secret: str, out: TextIO = sys.stdout) -> web.Application:
    verifier = Webhook(secret)
    seen: set[str] = set()

    async def receive(request: web.Request) -> web.Response:
        body = await request.text()
        try:
            verifier.verify(body, dict(request.headers))
        except WebhookVerificationError as exc:
            return web.json_response({"error": f"signature: {exc}"}, status=401)
        webhook_id = request.headers["webhook-id"]
        if webhook_id in seen:
            return web.json_response({"duplicate": True})
        seen.add(webhook_id)
        event = json.loads(body)
        data = event.get("data", {})
        received_at_ms = data.get("received_at_ms")
        line = {
            "webhook_id": webhook_id,
            "type": event.get("type"),
            "alert_id": data.get("alert_id"),
            "organization_id": data.get("organization_id"),
            "facility": data.get("facility"),
            "event_type": data.get("event_type"),
            "latency_ms": round(time.time() * 1000 - received_at_ms, 1) if received_at_ms else None,
        }
        out.write(json.dumps(line) + "\n")
        out.flush()
        return web.json_response({"accepted": True})

    app = web.Application()
    app.router.add_post("/{tail:.*}", receive)
    return app


def run(host: str, port: int, secret: str) -> None:
    web.run_app(make_app(secret), host=host, port=port, print=None, access_log=None)
