"""E-mails to organizations, queued in the transaction that decided them and sent by the
dispatcher (see :mod:`sinks.email`): a notice is not lost when the worker stops before sending it,
nor sent twice by two dispatchers. They carry no member data."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from sinks.sql.models import EmailNotice, Organization

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 10
# Longer than one SMTP exchange can take: a few commands, each with the mailer's 15 s timeout.
LEASE_S = 300.0
_ERROR_CHARS = 500


def retry_in_s(attempts: int) -> float:
    """A minute after the first failure, doubling, at most an hour apart."""
    return min(60.0 * 2 ** (attempts - 1), 3600.0)


@dataclass(frozen=True)
class Email:
    id: int
    to_address: str
    subject: str
    body: str
    attempts: int


class EmailNotices:
    def __init__(self, session: sessionmaker[Session]):
        self._session = session

    @staticmethod
    def queue(s: Session, organization_id: str, subject: str, body: str, now: float) -> bool:
        """In the caller's transaction; whether the organization has an address to send to."""
        address = s.scalar(select(Organization.notice_email).where(Organization.id == organization_id))
        if not address:
            return False
        s.add(EmailNotice(organization_id=organization_id, to_address=address, subject=subject, body=body,
                          created_at=now, status="pending", attempts=0, next_attempt_at=now))
        return True

    def claim(self, now: float) -> Email | None:
        """The e-mail due first, leased for as long as sending it can take (one at a time, so none
        waits leased behind a slow send) and so that no other dispatcher sends it meanwhile."""
        t = EmailNotice.__table__.c
        with self._session.begin() as s:
            due = s.scalar(select(t.id).where(t.status == "pending", t.next_attempt_at <= now)
                           .order_by(t.next_attempt_at).limit(1))
            if due is None:
                return None
            row = s.execute(update(EmailNotice.__table__).where(
                t.id == due, t.status == "pending", t.next_attempt_at <= now).values(next_attempt_at=now + LEASE_S)
                .returning(t.id, t.to_address, t.subject, t.body, t.attempts)).first()
        return Email(*row) if row else None

    def record(self, email: Email, error: str | None, now: float) -> None:
        attempts = email.attempts + 1
        values: dict = {"attempts": attempts}
        if error is None:
            values.update(status="sent", sent_at=now, last_error=None)
        else:
            values["last_error"] = error[:_ERROR_CHARS]
            if attempts >= MAX_ATTEMPTS:
                values["status"] = "failed"
                log.error("gave up e-mailing notice %d after %d attempts: %s", email.id, attempts, error)
            else:
                values["next_attempt_at"] = now + retry_in_s(attempts)
        with self._session.begin() as s:
            s.execute(update(EmailNotice).where(EmailNotice.id == email.id).values(**values))

    def all(self) -> list[EmailNotice]:
        with self._session() as s:
            return list(s.scalars(select(EmailNotice).order_by(EmailNotice.id)))
