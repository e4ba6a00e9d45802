"""An SMTP server that keeps every mail it is sent, for `regua dev`: aiosmtpd in a thread of this process.

Any process may send to it (`regua dev` itself, `regua clock`, `regua tick`): the mails live here,
where `/ops/mail` shows them, for as long as this process runs (the newest `limit` of them).
"""

from __future__ import annotations

import email
import email.policy
import logging
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from typing import Any

from aiosmtpd.controller import Controller

from billing.clock import Clock


class PortTaken(Exception):
    """Another program listens on the sink's port (another sink, a local mail server)."""


@dataclass(frozen=True)
class CaughtMail:
    received_at: datetime
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage

    def header(self, name: str) -> str | None:
        value = self.message[name]
        return None if value is None else str(value)

    def headers(self) -> list[tuple[str, str]]:
        return [(name, str(value)) for name, value in self.message.items()]

    def part(self, subtype: str) -> str | None:
        body = self.message.get_body(preferencelist=(subtype,))
        return None if body is None else str(body.get_content())

    def summary(self) -> dict[str, Any]:
        """What `/ops/mail.json` shows: the recipients and regua's own headers."""
        return {
            "to": list(self.rcpt_tos),
            "subject": self.header("Subject"),
            "kind": self.header("X-Regua-Kind"),
            "account": self.header("X-Regua-Account"),
            "invoice": self.header("X-Regua-Invoice"),
            "received_at": self.received_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        }


@dataclass
class MailSink:
    """Accepts every mail on host:port and keeps it, dated by its Date header or the given clock."""

    host: str
    port: int
    clock: Clock
    limit: int = 1000
    _mails: deque[CaughtMail] = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _controller: Controller | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._mails = deque(maxlen=self.limit)

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        """Listen, or raise PortTaken naming the port when something else already does."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((self.host, self.port))
            except OSError as error:
                raise PortTaken(f"{self.host}:{self.port} is taken ({error.strerror})") from None
        logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every connection at INFO
        controller = Controller(self, hostname=self.host, port=self.port, server_hostname="regua-dev-sink")
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def mails(self) -> list[CaughtMail]:
        """Newest first."""
        with self._lock:
            return list(reversed(self._mails))

    def _received_at(self, message: EmailMessage) -> datetime:
        """The mail's Date, set by the sender's clock: another process may have moved the shared clock
        days ahead within the second this process keeps its read. Without a Date, this clock's time."""
        try:
            dated = parsedate_to_datetime(str(message["Date"])) if message["Date"] else None
        except (TypeError, ValueError):
            dated = None
        return dated if dated is not None and dated.tzinfo is not None else self.clock.now()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        if not isinstance(parsed, EmailMessage):
            return "554 Transaction failed: unreadable message"
        caught = CaughtMail(self._received_at(parsed), str(envelope.mail_from), tuple(envelope.rcpt_tos), parsed)
        with self._lock:
            self._mails.append(caught)
        return "250 Message accepted for delivery"
