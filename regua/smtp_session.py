"""One open SMTP connection's mail transactions (MAIL, RCPT, DATA), written directly on its transport.

aiosmtplib opens the connection: greeting, EHLO, STARTTLS and AUTH, each once. The transactions
that follow, one per message, go through this protocol instead, which the transport is handed
over to: a reply is one future, the message goes out in one write with its leading dots doubled
(it arrives with CRLF lines already), and no reply is parsed twice. In `bench.emails` aiosmtplib's
own commands cost about 0.47 ms of CPU an email and these about 0.10 (the sink's side is the same).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

MAX_REPLY_BYTES = 64 * 1024
"""A reply longer than this is not a mail server talking: the connection is dropped."""


@dataclass(frozen=True)
class Reply:
    code: int
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    def __str__(self) -> str:
        return f"{self.code} {self.text}".rstrip()


class Refused(Exception):
    """The server answered MAIL or DATA with something else than going on."""

    def __init__(self, command: str, reply: Reply) -> None:
        super().__init__(f"{command}: {reply}")
        self.command = command
        self.reply = reply


class Lost(ConnectionError):
    """The connection closed, or answered garbage, while a reply was awaited."""


class LostBeforeMail(Lost):
    """Lost before MAIL was answered: nothing of the message was handed over, it can go on another connection."""


class Session(asyncio.Protocol):
    """An SMTP connection past its greeting, EHLO and AUTH, ready for mail transactions, one at a time."""

    def __init__(self, transport: asyncio.Transport, *, utf8: bool, timeout: float) -> None:
        self._transport = transport
        self._utf8 = utf8
        self._timeout = timeout
        self._buffer = bytearray()
        self._lines: list[bytes] = []
        self._waiter: asyncio.Future[Reply] | None = None
        self._lost: BaseException | None = None
        self._gone = asyncio.get_running_loop().create_future()

    @classmethod
    def take_over(cls, transport: asyncio.BaseTransport, *, utf8: bool, timeout: float) -> Session:
        """This protocol on `transport` from now on (its previous protocol no longer hears from it)."""
        assert isinstance(transport, asyncio.Transport)
        session = cls(transport, utf8=utf8, timeout=timeout)
        transport.set_protocol(session)
        return session

    @property
    def is_open(self) -> bool:
        return self._lost is None and not self._transport.is_closing()

    async def transaction(
        self, sender: str, recipients: tuple[str, ...], data: bytes
    ) -> tuple[Reply | None, dict[str, Reply]]:
        """Send one message: the server's answer to it, and the recipients it refused (with their replies).

        With every recipient refused the answer is None, after an RSET: the connection stays
        usable. Raises Refused for an unwelcome answer to MAIL or DATA, Lost or TimeoutError when
        the conversation broke off (the connection is then no good).
        """
        options = self._options(sender, recipients)
        try:
            mail = await self._command(b"MAIL FROM:<%s>%s\r\n" % (self._address(sender), options))
        except Lost as lost:
            raise LostBeforeMail(str(lost)) from lost
        if not mail.ok:
            raise Refused("MAIL", mail)
        refused: dict[str, Reply] = {}
        for recipient in recipients:
            reply = await self._command(b"RCPT TO:<%s>\r\n" % self._address(recipient))
            if not reply.ok:
                refused[recipient] = reply
        if len(refused) == len(recipients):
            await self._command(b"RSET\r\n")
            return None, refused
        start = await self._command(b"DATA\r\n")
        if start.code != 354:
            raise Refused("DATA", start)
        answer = await self._command(_dot_stuffed(data))
        if not answer.ok:
            raise Refused("DATA", answer)
        return answer, refused

    async def quit(self, *, wait: float) -> None:
        """QUIT, close, and wait up to `wait` seconds for the connection to end: a TLS connection ends once
        the server answered the close; one that does not is dropped without that courtesy."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(wait):
                await self._command(b"QUIT\r\n")
        self.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await asyncio.shield(self._gone)
        if not self._gone.done():
            self._transport.abort()

    def close(self) -> None:
        self._transport.close()

    # asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (end := self._buffer.find(b"\r\n")) >= 0:
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 2]
            self._lines.append(line)
            if line[3:4] == b"-":
                continue
            lines, self._lines = self._lines, []
            self._answer(lines)
        if len(self._buffer) + sum(map(len, self._lines)) > MAX_REPLY_BYTES:
            self._break(Lost("the mail server's reply is too long"))

    def eof_received(self) -> bool:
        self._break(Lost("the mail server closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._break(Lost(f"the connection was lost: {exc}" if exc else "the connection was closed"))
        if not self._gone.done():
            self._gone.set_result(None)

    # Inside

    async def _command(self, line: bytes) -> Reply:
        if not self.is_open:
            raise self._lost or Lost("the connection was closed")
        waiter: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self._transport.write(line)
        async with asyncio.timeout(self._timeout):
            return await waiter

    def _answer(self, lines: list[bytes]) -> None:
        waiter, self._waiter = self._waiter, None
        try:
            code = int(lines[-1][:3])
        except ValueError:
            self._break(Lost(f"not an SMTP reply: {lines[-1][:80]!r}"))
            return
        if waiter is None or waiter.done():
            self._break(Lost(f"a reply nobody asked for: {lines[-1][:80]!r}"))
            return
        text = "\n".join(line[4:].decode("utf-8", "replace") for line in lines)
        waiter.set_result(Reply(code, text))

    def _break(self, error: BaseException) -> None:
        if self._lost is None:
            self._lost = error
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(self._lost)
        self._transport.close()

    def _address(self, address: str) -> bytes:
        return address.encode("utf-8" if self._utf8 else "ascii")

    def _options(self, sender: str, recipients: tuple[str, ...]) -> bytes:
        if all(address.isascii() for address in (sender, *recipients)):
            return b""
        if not self._utf8:
            raise Refused("MAIL", Reply(553, "the mail server takes no addresses beyond ASCII (no SMTPUTF8)"))
        return b" SMTPUTF8"


def _dot_stuffed(data: bytes) -> bytes:
    """The message as DATA carries it: CRLF lines, a leading dot doubled, ending with CRLF.CRLF."""
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..") + b".\r\n"
