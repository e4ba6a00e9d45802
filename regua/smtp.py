"""The SMTP transport: an event loop of its own, a few connections kept open, used from any thread.

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from regua.smtp_session import Lost, LostBeforeMail, Refused, Reply, Session

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
    def send_many(self, messages: Iterable[Outgoing]) -> list[Accepted | MailError]:
        """Hand the messages to the mail server, each as soon as `messages` yields it; for each, what
        the server said (errors are returned, not raised)."""
        ...


@dataclass(eq=False)
class _Batch:
    """One send_many's messages on the loop: their tasks, and the failure that spares the rest a wait."""

    tasks: list[asyncio.Task[Accepted | MailError]] = field(default_factory=list)
    broken: list[MailError] = field(default_factory=list)
    started: float | None = None


class SmtpMailer:
    """Sends over SMTP from any thread, through a few connections kept open between messages.

    One event loop runs in a thread of its own; a caller hands it a batch and waits for the
    answers, the messages of a batch going out side by side on up to `connections` connections,
    each as soon as the caller has it (the first is on the wire while the caller renders the next). A
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
        self._idle: list[tuple[Session, float]] = []
        self._sending: set[asyncio.Task[Accepted | MailError]] = set()
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

    def send_many(self, messages: Iterable[Outgoing]) -> list[Accepted | MailError]:
        loop = self._running_loop()
        batch = _Batch()
        count = 0
        try:
            for message in messages:
                loop.call_soon_threadsafe(self._start, batch, message)
                count += 1
        finally:
            if count:  # whatever stopped the caller, what is on its way is seen to the end
                future = asyncio.run_coroutine_threadsafe(self._finish(batch), loop)
        if not count:
            return []
        try:
            return future.result(timeout=ATTEMPT_SECONDS + 5)
        except concurrent.futures.TimeoutError:  # the loop itself is stuck: nothing is known
            future.cancel()
            stuck = TemporaryMailError(f"no answer from {self._where()}", unreachable=True)
            return [stuck for _ in range(count)]

    def close(self) -> None:
        """Say QUIT on the idle connections and stop the loop; a later send starts afresh."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._quit_all(), loop).result(timeout=COMMAND_SECONDS + 5)
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

    def _start(self, batch: _Batch, message: Outgoing) -> None:
        if batch.started is None:
            batch.started = asyncio.get_running_loop().time()
        task = asyncio.ensure_future(self._send_one(message, batch.broken))
        batch.tasks.append(task)
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _finish(self, batch: _Batch) -> list[Accepted | MailError]:
        """Each message's answer; those still unanswered ATTEMPT_SECONDS after the first began are
        temporary failures.

        The first message that finds the server unreachable fails the ones not yet started the same
        way, instead of each waiting for its own connection to time out.
        """
        assert batch.started is not None
        left = ATTEMPT_SECONDS - (asyncio.get_running_loop().time() - batch.started)
        _, pending = await asyncio.wait(batch.tasks, timeout=max(left, 0.001))
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        late = TemporaryMailError(f"no answer from {self._where()} within {ATTEMPT_SECONDS:.0f} s", unreachable=True)
        return [late if task.cancelled() else task.result() for task in batch.tasks]

    async def _send_one(self, message: Outgoing, broken: list[MailError]) -> Accepted | MailError:
        assert self._slots is not None
        if not message.recipients:
            return PermanentMailError("a message with no recipients")
        async with self._slots:
            if broken:
                return broken[0]
            session: Session | None = None
            try:
                session, reused = await self._checkout()
                try:
                    answer, refused = await session.transaction(message.sender, message.recipients, message.data)
                except (Lost, Refused) as error:
                    if not reused or not _dropped_before_mail(error):
                        raise
                    session.close()  # the server dropped an idle connection: nothing was handed over yet
                    session = None
                    session = await self._connect()
                    answer, refused = await session.transaction(message.sender, message.recipients, message.data)
            except (Refused, Lost, aiosmtplib.SMTPException, OSError) as error:
                failure = self._failure(error)
                if session is None:
                    broken.append(failure)
                else:
                    session.close()  # a conversation in an unknown state is not reused
                return failure
            except BaseException:
                if session is not None:
                    session.close()
                raise
            self._idle.append((session, asyncio.get_running_loop().time()))
            if answer is None:
                return _refusal(refused)
            return Accepted(str(answer), {recipient: str(reply) for recipient, reply in refused.items()})

    def _failure(self, error: BaseException) -> MailError:
        if isinstance(error, Refused):
            answer = str(error.reply)
            return PermanentMailError(answer) if error.reply.code >= 500 else TemporaryMailError(answer)
        if isinstance(error, aiosmtplib.SMTPResponseException):  # to the greeting, EHLO, STARTTLS or AUTH
            return TemporaryMailError(f"{self._where()} answered {error.code} {error.message}", unreachable=True)
        return TemporaryMailError(f"{self._where()}: {type(error).__name__}: {error}", unreachable=True)

    async def _checkout(self) -> tuple[Session, bool]:
        now = asyncio.get_running_loop().time()
        while self._idle:
            session, since = self._idle.pop()
            if session.is_open and now - since < self._idle_seconds:
                return session, True
            session.close()
        return await self._connect(), False

    async def _connect(self) -> Session:
        """A connection past its greeting, EHLO, STARTTLS and AUTH (aiosmtplib's), handed over to a Session."""
        if self._hostname is None:
            self._hostname = socket.getfqdn()  # once: aiosmtplib would look it up on every connection
        client = aiosmtplib.SMTP(
            hostname=self.url.host,
            port=self.url.port,
            use_tls=self.url.tls,
            start_tls=self.url.starttls,
            local_hostname=self._hostname,
            timeout=COMMAND_SECONDS,
        )
        await client.connect()
        try:
            if client.is_ehlo_or_helo_needed:  # after STARTTLS, connect() said EHLO already
                try:
                    await client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await client.helo()
            if self.url.username is not None:
                await client.login(self.url.username, self.url.password or "")
        except BaseException:
            if isinstance(client.transport, asyncio.Transport):
                client.transport.abort()  # a TLS close would wait for a server that has just said no
            client.close()
            raise
        assert client.transport is not None
        return Session.take_over(client.transport, utf8=client.supports_extension("smtputf8"), timeout=COMMAND_SECONDS)

    async def _quit_all(self) -> None:
        """Let the messages on their way finish (a caller that stopped early may have left some), then QUIT."""
        if self._sending:
            await asyncio.wait(set(self._sending), timeout=COMMAND_SECONDS)
        idle, self._idle = self._idle, []
        await asyncio.gather(*(session.quit(wait=1.0) for session, _ in idle), return_exceptions=True)


def _dropped_before_mail(error: Lost | Refused) -> bool:
    """A kept connection found closed, or closing (421), at MAIL: the server dropped it while it idled.

    Lost later (after RCPT, DATA or the message itself), the message may have been accepted: it is a
    temporary failure, retried by the job with the same Message-ID, never sent again at once."""
    if isinstance(error, Refused):
        return error.command == "MAIL" and error.reply.code == 421
    return isinstance(error, LostBeforeMail)


def _refusal(refused: Mapping[str, Reply]) -> MailError:
    answer = "; ".join(f"{recipient}: {reply}" for recipient, reply in refused.items())
    if all(reply.code >= 500 for reply in refused.values()):
        return PermanentMailError(answer)
    return TemporaryMailError(answer)
