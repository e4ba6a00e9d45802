"""The SMTP transport: aiosmtplib on an event loop of its own, a few connections kept open, used from any thread.

    MailError
    ├── TemporaryMailError   try again later; `unreachable` when no conversation took place
    └── PermanentMailError   the server refused this message for good (5xx to MAIL, RCPT or DATA)

Connection, greeting, EHLO, STARTTLS and AUTH problems are temporary whatever their code: they say
the server cannot be used now, not that this message is unwelcome.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

COMMAND_SECONDS = 10.0
CONNECTIONS = 8
"""SMTP connections a mailer keeps open (and uses side by side) at most."""
ATTEMPT_SECONDS = 40.0
"""The longest a send (or a batch of them) may take; what is unanswered by then is a temporary failure."""


@dataclass(frozen=True)
class SmtpUrl:
    """`smtp://[USER:PASS@]HOST:PORT[?starttls=true]` or `smtps://...` (TLS from the first byte)."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    starttls: bool = False

    @classmethod
    def parse(cls, url: str) -> SmtpUrl:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError(f"REGUA_SMTP_URL must start with smtp:// or smtps://, not {parts.scheme or url!r}")
        if not parts.hostname:
            raise ValueError("REGUA_SMTP_URL names no host")
        try:
            port = parts.port
        except ValueError:
            raise ValueError("REGUA_SMTP_URL has an invalid port") from None
        flags = {key.lower(): values[-1].lower() for key, values in parse_qs(parts.query).items()}
        unknown = set(flags) - {"starttls"}
        if unknown:
            raise ValueError(f"REGUA_SMTP_URL: unknown option {sorted(unknown)[0]!r} (only starttls)")
        starttls = flags.get("starttls", "false") in ("1", "true", "yes")
        tls = parts.scheme == "smtps"
        if tls and starttls:
            raise ValueError("REGUA_SMTP_URL: smtps:// is TLS already; starttls=true goes with smtp://")
        return cls(
            host=parts.hostname,
            port=port or (465 if tls else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
            starttls=starttls,
        )


class MailError(Exception):
    pass


class TemporaryMailError(MailError):
    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


class PermanentMailError(MailError):
    pass


@dataclass(frozen=True)
class Outgoing:
    """One message as it goes on the wire (CRLF lines), and its envelope."""

    data: bytes
    sender: str
    recipients: tuple[str, ...]


@dataclass(frozen=True)
class Accepted:
    reply: str
    refused: dict[str, str] = field(default_factory=dict)
    """Recipients the server refused while it accepted the message for the others."""


class Mailer(Protocol):
    def send_many(self, messages: Sequence[Outgoing]) -> list[Accepted | MailError]:
        """Hand the messages to the mail server; for each, what the server said (errors are returned, not raised)."""
        ...


class SmtpMailer:
    """Sends over SMTP from any thread, through a few connections kept open between messages.

    One event loop runs in a thread of its own; a caller hands it a batch and waits for the
    answers, the messages of a batch going out side by side on up to `connections` connections. A
    connection that idled too long, or that the server dropped before a message was handed over, is
    replaced. Call `close()` (or use it as a context manager) when done.
    """

    def __init__(self, url: SmtpUrl | str, *, connections: int = CONNECTIONS, idle_seconds: float = 30.0) -> None:
        self.url = SmtpUrl.parse(url) if isinstance(url, str) else url
        self._connections = connections
        self._idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._slots: asyncio.Semaphore | None = None
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []
        self._hostname: str | None = None

    def __enter__(self) -> SmtpMailer:
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def send(self, data: bytes, *, sender: str, recipients: Sequence[str]) -> Accepted:
        """One message; raises TemporaryMailError or PermanentMailError."""
        [answer] = self.send_many([Outgoing(data, sender, tuple(recipients))])
        if isinstance(answer, MailError):
            raise answer
        return answer

    def send_many(self, messages: Sequence[Outgoing]) -> list[Accepted | MailError]:
        if not messages:
            return []
        future = asyncio.run_coroutine_threadsafe(self._send_all(list(messages)), self._running_loop())
        try:
            return future.result(timeout=ATTEMPT_SECONDS + 5)
        except concurrent.futures.TimeoutError:  # the loop itself is stuck: nothing is known
            future.cancel()
            stuck = TemporaryMailError(f"no answer from {self._where()}", unreachable=True)
            return [stuck for _ in messages]

    def close(self) -> None:
        """Say QUIT on the idle connections and stop the loop; a later send starts afresh."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._quit_all(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        if not thread.is_alive():
            loop.close()

    def _where(self) -> str:
        return f"the mail server at {self.url.host}:{self.url.port}"

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                thread = threading.Thread(target=self._run, args=(loop, ready), name="regua-smtp", daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    def _run(self, loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        self._slots = asyncio.Semaphore(self._connections)
        self._idle = []
        loop.call_soon(ready.set)
        loop.run_forever()

    async def _send_all(self, messages: list[Outgoing]) -> list[Accepted | MailError]:
        """Each message's answer; those still unanswered after ATTEMPT_SECONDS are temporary failures.

        The first message that finds the server unreachable fails the ones not yet started the same
        way, instead of each waiting for its own connection to time out.
        """
        broken: list[MailError] = []
        tasks = [asyncio.ensure_future(self._send_one(message, broken)) for message in messages]
        _, pending = await asyncio.wait(tasks, timeout=ATTEMPT_SECONDS)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        late = TemporaryMailError(f"no answer from {self._where()} within {ATTEMPT_SECONDS:.0f} s", unreachable=True)
        return [late if task.cancelled() else task.result() for task in tasks]

    async def _send_one(self, message: Outgoing, broken: list[MailError]) -> Accepted | MailError:
        assert self._slots is not None
        async with self._slots:
            if broken:
                return broken[0]
            client: aiosmtplib.SMTP | None = None
            try:
                client, reused = await self._checkout()
                try:
                    await client.mail(message.sender)
                except aiosmtplib.SMTPServerDisconnected:
                    if not reused:
                        raise
                    client.close()  # the server dropped an idle connection: nothing was handed over yet
                    client = None
                    client = await self._connect()
                    await client.mail(message.sender)
                answer = await self._hand_over(client, message)
            except (aiosmtplib.SMTPException, OSError) as error:
                failure = self._failure(error)
                if client is None:
                    broken.append(failure)
                else:
                    client.close()  # a conversation in an unknown state is not reused
                return failure
            except BaseException:
                if client is not None:
                    client.close()
                raise
            self._idle.append((client, asyncio.get_running_loop().time()))
            return answer

    async def _hand_over(self, client: aiosmtplib.SMTP, message: Outgoing) -> Accepted | MailError:
        """RCPT for each recipient, then DATA unless every one was refused (the connection stays usable)."""
        refused: dict[str, aiosmtplib.SMTPRecipientRefused] = {}
        for recipient in message.recipients:
            try:
                await client.rcpt(recipient)
            except aiosmtplib.SMTPRecipientRefused as error:
                refused[recipient] = error
        if len(refused) == len(message.recipients):
            await client.rset()
            return _refusal(refused)
        response = await client.data(message.data)
        return Accepted(
            f"{response.code} {response.message}",
            {recipient: f"{error.code} {error.message}" for recipient, error in refused.items()},
        )

    def _failure(self, error: BaseException) -> MailError:
        if isinstance(error, aiosmtplib.SMTPSenderRefused | aiosmtplib.SMTPRecipientRefused | aiosmtplib.SMTPDataError):
            answer = f"{error.code} {error.message}"
            return PermanentMailError(answer) if error.code >= 500 else TemporaryMailError(answer)
        if isinstance(error, aiosmtplib.SMTPResponseException):  # to the greeting, EHLO, STARTTLS or AUTH
            return TemporaryMailError(f"{self._where()} answered {error.code} {error.message}", unreachable=True)
        return TemporaryMailError(f"{self._where()}: {type(error).__name__}: {error}", unreachable=True)

    async def _checkout(self) -> tuple[aiosmtplib.SMTP, bool]:
        now = asyncio.get_running_loop().time()
        while self._idle:
            client, since = self._idle.pop()
            if client.is_connected and now - since < self._idle_seconds:
                return client, True
            client.close()
        return await self._connect(), False

    async def _connect(self) -> aiosmtplib.SMTP:
        if self._hostname is None:
            self._hostname = socket.getfqdn()  # once: aiosmtplib would look it up on every connection
        client = aiosmtplib.SMTP(
            hostname=self.url.host,
            port=self.url.port,
            username=self.url.username,
            password=self.url.password,
            use_tls=self.url.tls,
            start_tls=self.url.starttls,
            local_hostname=self._hostname,
            timeout=COMMAND_SECONDS,
        )
        await client.connect()
        return client

    async def _quit_all(self) -> None:
        idle, self._idle = self._idle, []
        for client, _ in idle:
            with contextlib.suppress(Exception):
                await client.quit(timeout=2)
            client.close()
        await asyncio.sleep(0)  # let the transports finish closing before the loop stops


def _refusal(refused: Mapping[str, aiosmtplib.SMTPRecipientRefused]) -> MailError:
    answer = "; ".join(f"{recipient}: {error.code} {error.message}" for recipient, error in refused.items())
    if all(error.code >= 500 for error in refused.values()):
        return PermanentMailError(answer)
    return TemporaryMailError(answer)
