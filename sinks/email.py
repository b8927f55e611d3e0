"""Sending e-mail over SMTP, for notices that cannot go by webhook (an organization's endpoint was
disabled). Configured by ``GAPSTREAM_SMTP_URL``:

- ``smtp://[user:password@]host[:port]``: port 25 by default, upgraded with STARTTLS whenever the
  server offers it (certificates verified); with a user, STARTTLS is required;
- ``smtps://[user:password@]host[:port]``: TLS from the start, port 465 by default.
"""
from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

SCHEMES = {"smtp": 25, "smtps": 465}


class MailError(ValueError):
    """An SMTP URL gapstream cannot use."""


@dataclass(frozen=True)
class Mailer:
    url: str
    sender: str
    timeout_s: float = 15.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in SCHEMES or not parts.hostname:
            raise MailError(f"GAPSTREAM_SMTP_URL must be smtp://host[:port] or smtps://host[:port], not {self.url!r}")

    def send(self, to: str, subject: str, body: str) -> None:
        """Raises ``smtplib.SMTPException`` or ``OSError`` when the server does not take it."""
        parts = urlsplit(self.url)
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self.sender, to, subject
        message.set_content(body)
        tls = ssl.create_default_context()
        port = parts.port or SCHEMES[parts.scheme]
        if parts.scheme == "smtps":
            client: smtplib.SMTP = smtplib.SMTP_SSL(parts.hostname, port, timeout=self.timeout_s, context=tls)
        else:
            client = smtplib.SMTP(parts.hostname, port, timeout=self.timeout_s)
        with client:
            secure = parts.scheme == "smtps"
            if parts.scheme == "smtp":
                client.ehlo()
                if client.has_extn("starttls"):
                    client.starttls(context=tls)
                    client.ehlo()
                    secure = True
            if parts.username and not secure:  # a stripped STARTTLS must not get the password
                raise smtplib.SMTPException("the server offered no STARTTLS: not sending the password in clear")
            if parts.username:
                client.login(unquote(parts.username), unquote(parts.password or ""))
            client.send_message(message)
