"""Signing secrets are sealed in the database, opened only with the keys kept outside it."""
import stat
import time
from dataclasses import replace

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from sinks.sql.sealing import Sealer, SealError
from sinks.sql.store import Store
from sinks.sql.subscriptions import Spec
from sinks.webhooks.egress import Egress


def subscribed(url: str, sealer: Sealer) -> tuple[Store, str]:
    store = Store(url, sealer, egress=Egress(["127.0.0.1"]))
    store.subscriptions.add_organization("ORG1", "One", "test")
    _, secret = store.subscriptions.create("ORG1", Spec(url="http://127.0.0.1:9/h"), "test")
    return store, secret


def stored_secrets(store: Store) -> list[str]:
    with store.engine.connect() as c:
        return [v for row in c.execute(text("SELECT secret, previous_secret FROM subscriptions")) for v in row if v]


def test_the_database_holds_no_secret_and_the_dispatcher_signs_with_it(tmp_path):
    store, secret = subscribed(f"sqlite:///{tmp_path / 'g.db'}", Sealer.generate())
    [stored] = stored_secrets(store)
    assert secret.startswith("whsec_") and secret not in stored and secret.removeprefix("whsec_") not in stored
    from tests.test_webhooks import make_alert  # claiming opens the secret for signing
    store.outbox.save_alerts([make_alert("a1")])
    [job] = store.outbox.claim_due(9e9, 30, {}, 4).jobs
    assert job.secrets == (secret,)


def test_after_a_rotation_both_secrets_are_sealed_and_both_sign(tmp_path):
    store, first = subscribed(f"sqlite:///{tmp_path / 'g.db'}", Sealer.generate())
    [sub] = store.subscriptions.of("ORG1")
    second, _ = store.subscriptions.rotate_secret("ORG1", sub["id"], "test", 3600)
    assert all(s.startswith("fernet:") for s in stored_secrets(store)) and len(stored_secrets(store)) == 2
    from tests.test_webhooks import make_alert
    store.outbox.save_alerts([make_alert("a1")])
    [job] = store.outbox.claim_due(time.time() + 1, 30, {}, 4).jobs  # within the overlap
    assert job.secrets == (second, first)


def test_a_key_is_rotated_by_putting_the_new_one_first(tmp_path):
    url, old, new = f"sqlite:///{tmp_path / 'g.db'}", Fernet.generate_key(), Fernet.generate_key()
    subscribed(url, Sealer([old]))
    with pytest.raises(SealError, match="sealed with another key"):
        Store(url, Sealer([new]))  # refused at the start, not at every delivery later
    Store(url, Sealer([new, old]))  # opens what the old key sealed, and seals it again under the new one
    Store(url, Sealer([new]))  # so the old key can go
    with pytest.raises(SealError, match="sealed with another key"):
        Store(url, Sealer([old]))


def test_the_embedded_key_file_is_the_owners_and_kept(tmp_path):
    key = tmp_path / "data" / "secret.key"
    sealed = Sealer.from_key_file(key).seal("whsec_abc")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert Sealer.from_key_file(key).open(sealed) == "whsec_abc"


def test_a_malformed_key_says_how_to_make_one():
    with pytest.raises(SealError, match="Fernet.generate_key"):
        Sealer(["not-a-key"])


def test_a_secret_no_key_opens_holds_back_only_its_own_subscription(tmp_path):
    url = f"sqlite:///{tmp_path / 'g.db'}"
    store, secret = subscribed(url, Sealer.generate())
    store.subscriptions.add_organization("ORG2", "Two", "test")
    stranger = Store(url, Sealer.generate(), migrate=False, egress=Egress(["127.0.0.1"]))  # another key adds one
    stranger.subscriptions.create("ORG2", Spec(url="http://127.0.0.1:9/h2"), "test")
    from tests.test_webhooks import make_alert
    store.outbox.save_alerts([make_alert("a1"), replace(make_alert("a2", member="M2"), organization_id="ORG2")])
    [job] = store.outbox.claim_due(time.time() + 1, 30, {}, 4).jobs
    assert (job.organization_id, job.secrets) == ("ORG1", (secret,))
