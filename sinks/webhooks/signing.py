"""Standard Webhooks signatures (https://www.standardwebhooks.com), made with the reference library."""
from __future__ import annotations

import base64
import datetime as dt
import functools
import secrets as random_source
from collections.abc import Sequence

from standardwebhooks.webhooks import Webhook


def new_secret() -> str:
    return "whsec_" + base64.b64encode(random_source.token_bytes(32)).decode()


def is_secret(value: str) -> bool:
    try:
        return value.startswith("whsec_") and len(base64.b64decode(value[6:], validate=True)) >= 24
    except ValueError:
        return False


@functools.lru_cache(maxsize=4096)
def _signer(secret: str) -> Webhook:
    """Decoding a secret costs as much as signing with it, and a dispatcher signs with the same few
    hundred secrets thousands of times a second."""
    return Webhook(secret)


def signed_headers(secrets: str | Sequence[str], webhook_id: str, body: str, at: dt.datetime | None = None,
                   content_type: str = "application/json") -> dict[str, str]:
    """One signature per secret, space-separated: during a rotation a receiver that knows either
    secret verifies the message."""
    at = at or dt.datetime.now(dt.UTC)
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": " ".join(_signer(key).sign(webhook_id, at, body) for key in keys),
        "content-type": content_type,
    }
