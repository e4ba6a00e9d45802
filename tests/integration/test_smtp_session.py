"""The mail transactions regua writes itself once aiosmtplib has opened the connection (`regua.smtp_session`),
through `SmtpMailer` against a real aiosmtpd server: dot-stuffing, multi-line replies, which answers are
temporary or permanent, a connection that breaks or goes silent, SMTPUTF8, TLS, and messages sent as they come.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import ssl
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

import regua.smtp
from regua.smtp import Accepted, MailError, Outgoing, PermanentMailError, SmtpMailer, TemporaryMailError

SENDER = "financeiro@regua.example"
ANA = "ana@padaria.example"
BIA = "bia@padaria.example"
CAIO = "caio@padaria.example"
JOAO = "joão@padaria.example"
USER, PASSWORD = "regua", "s3nha secreta"


def message(subject: str, to: str = ANA) -> bytes:
    """A small message as regua hands it over: CRLF lines."""
    return (
        f"From: {SENDER}\r\nTo: {to}\r\nSubject: {subject}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nolá\r\n"
    ).encode()


def subjects(received: list[Got]) -> list[str]:
    return [got.subject for got in received]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def eventually(condition: Callable[[], bool], *, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


# The server side: handlers that record what they are sent, and answer as told.


@dataclass(frozen=True)
class Got:
    """One message as the server received it (dot-stuffing undone by aiosmtpd)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    mail_options: tuple[str, ...]
    content: bytes
    authenticated: bool
    encrypted: bool

    @property
    def subject(self) -> str:
        for line in self.content.split(b"\r\n"):
            if line.startswith(b"Subject: "):
                return line.removeprefix(b"Subject: ").decode()
        return ""


class Sink:
    """Accepts everything (but `refuse`d recipients), keeping each message and the transaction commands it saw."""

    def __init__(self, refuse: dict[str, str] | None = None) -> None:
        self.refuse = refuse or {}
        self.commands: list[str] = []
        self.received: list[Got] = []

    def answer_mail(self, number: int) -> str | None:
        """What to say to the `number`th MAIL (counting from 1) instead of accepting it."""
        return None

    def answer_data(self, number: int) -> str:
        """What to say at the end of the `number`th message's data (it is kept whatever the answer)."""
        return "250 2.0.0 Ok: queued"

    async def handle_MAIL(self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        self.commands.append("MAIL")
        answer = self.answer_mail(self.commands.count("MAIL"))
        if answer is not None:
            if answer.startswith("421"):  # "closing the transmission channel": so it does
                asyncio.get_running_loop().call_soon(_close, server)
            return answer
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        self.commands.append(f"RCPT {address}")
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_RSET(self, server: SMTP, session: Any, envelope: Any) -> str:
        self.commands.append("RSET")
        return "250 2.0.0 Ok"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        self.commands.append("DATA")
        transport = server.transport
        self.received.append(
            Got(
                mail_from=envelope.mail_from,
                rcpt_tos=tuple(envelope.rcpt_tos),
                mail_options=tuple(envelope.mail_options),
                content=bytes(envelope.original_content),
                authenticated=bool(session.authenticated),
                encrypted=transport is not None and transport.get_extra_info("ssl_object") is not None,
            )
        )
        return self.answer_data(len(self.received))


def _close(server: SMTP) -> None:
    if server.transport is not None:
        server.transport.close()


class MultiLineReplies(Sink):
    """Every RCPT and end-of-data answer in two lines."""

    async def handle_RCPT(self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        answer = await super().handle_RCPT(server, session, envelope, address, options)
        code = answer[:3]
        return f"{code}-first line for {address}\r\n{code} second line for {address}"

    def answer_data(self, number: int) -> str:
        return f"250-2.0.0 message {number} queued as Q{number}\r\n250-SIZE ok\r\n250 2.0.0 see you"


class AnswersMail(Sink):
    """Answers the chosen MAIL commands (by number) with the given replies."""

    def __init__(self, answers: dict[int, str]) -> None:
        super().__init__()
        self.answers = answers

    def answer_mail(self, number: int) -> str | None:
        return self.answers.get(number)


class AnswersData(Sink):
    """Answers the end of every message's data with `answer`."""

    def __init__(self, answer: str) -> None:
        super().__init__()
        self.answer = answer

    def answer_data(self, number: int) -> str:
        return self.answer


class DropsAfterData(Sink):
    """At the end of the chosen messages' data (by number), drops the connection instead of answering; the
    message is kept when `kept` (the server took it, only its answer was lost)."""

    def __init__(self, numbers: set[int], *, kept: bool) -> None:
        super().__init__()
        self.numbers = numbers
        self.kept = kept
        self.seen = 0

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        self.seen += 1
        if self.seen not in self.numbers:
            return await super().handle_DATA(server, session, envelope)
        if self.kept:
            await super().handle_DATA(server, session, envelope)
        _close(server)
        await asyncio.sleep(30)  # cancelled as the connection goes: no answer is ever written
        raise AssertionError("the dropped connection should have cancelled this")


class DropsAtMail(Sink):
    """Drops the connection at the chosen MAIL commands (by number) without answering them."""

    def __init__(self, numbers: set[int]) -> None:
        super().__init__()
        self.numbers = numbers

    async def handle_MAIL(self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if self.commands.count("MAIL") + 1 not in self.numbers:
            return await super().handle_MAIL(server, session, envelope, address, options)
        self.commands.append("MAIL")
        _close(server)
        await asyncio.sleep(30)  # cancelled as the connection goes
        raise AssertionError("the dropped connection should have cancelled this")


class SilentAtMail(Sink):
    """Greets and answers EHLO, then never answers MAIL."""

    async def handle_MAIL(self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        self.commands.append("MAIL")
        await asyncio.sleep(30)  # cancelled when the client hangs up, or when the server stops
        return "250 too late"


class Server(Controller):
    """aiosmtpd on a free 127.0.0.1 port, counting the connections it takes (not its own start-up probe)."""

    def __init__(self, handler: Sink, *, smtp_class: type[SMTP] = SMTP, **smtp: Any) -> None:
        super().__init__(
            handler, hostname="127.0.0.1", port=free_port(), server_hostname="sink.test", ready_timeout=5, **smtp
        )
        self.smtp_class = smtp_class
        self.connections = 0
        self._probing = False

    def start(self) -> None:
        self._probing = True
        try:
            super().start()
        finally:
            self._probing = False

    def factory(self) -> SMTP:
        smtp = self.smtp_class(self.handler, **self.SMTP_kwargs)
        if not self._probing:
            self.connections += 1
        return smtp

    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"


@contextmanager
def serving(handler: Sink, **smtp: Any) -> Iterator[Server]:
    server = Server(handler, **smtp)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def collect_unclosed() -> list[str]:
    """Collects the garbage now: the sockets and transports found never closed (their ResourceWarnings)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    return [str(warning.message) for warning in caught if issubclass(warning.category, ResourceWarning)]


def send(mailer: SmtpMailer, data: bytes, *recipients: str, sender: str = SENDER) -> Accepted:
    return mailer.send(data, sender=sender, recipients=recipients or (ANA,))


# 1. Dot-stuffing


HEADERS = f"From: {SENDER}\r\nTo: {ANA}\r\nSubject: pontos\r\n\r\n".encode()
DOTTED_LINES = [b".um ponto", b"..dois pontos", b".", b"...", b"meio . ponto", b". espaco", b"", b"fim"]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(HEADERS + b"".join(line + b"\r\n" for line in DOTTED_LINES), id="dotted-lines"),
        pytest.param(HEADERS + b"\r\n".join(DOTTED_LINES), id="no-final-crlf"),
        pytest.param(b".the very first byte is a dot\r\n.\r\nthen text\r\n", id="dot-first"),
        pytest.param(HEADERS + b"corpo\r\n.", id="lone-dot-last-without-crlf"),
        pytest.param(HEADERS + b"corpo\r\n..\r\n", id="two-dots-last"),
    ],
)
def test_lines_starting_with_dots_arrive_as_written_and_a_missing_final_crlf_is_added(data: bytes) -> None:
    sink = Sink()
    with serving(sink) as server, SmtpMailer(server.url()) as mailer:
        accepted = send(mailer, data)
        send(mailer, message("a seguinte"))  # the conversation is still in step after it
    assert accepted.reply.startswith("250")
    first, second = sink.received
    expected = data if data.endswith(b"\r\n") else data + b"\r\n"
    assert first.content.split(b"\r\n") == expected.split(b"\r\n")
    assert first.content == expected
    assert second.subject == "a seguinte"


# 2. Multi-line replies


def test_multi_line_replies_to_rcpt_and_to_the_end_of_data_are_read_whole() -> None:
    sink = MultiLineReplies(refuse={CAIO: "550 5.1.1 no such mailbox"})
    with serving(sink) as server, SmtpMailer(server.url()) as mailer:
        accepted = send(mailer, message("primeira"), ANA, CAIO, BIA)
        again = send(mailer, message("segunda"), BIA)
        assert server.connections == 1
    assert accepted.reply.startswith("250 ")
    assert "message 1 queued as Q1" in accepted.reply
    assert "see you" in accepted.reply
    assert list(accepted.refused) == [CAIO]
    assert accepted.refused[CAIO].startswith("550 ")
    assert "first line for" in accepted.refused[CAIO]
    assert "second line for" in accepted.refused[CAIO]
    assert "queued as Q2" in again.reply
    assert [got.rcpt_tos for got in sink.received] == [(ANA, BIA), (BIA,)]


# 3. 421 to MAIL: a kept connection the server is closing is replaced once


def test_a_421_to_mail_on_a_kept_connection_reconnects_once_and_delivers_once() -> None:
    sink = AnswersMail({2: "421 4.3.2 closing idle connection"})
    with serving(sink) as server, SmtpMailer(server.url()) as mailer:
        send(mailer, message("primeira"))
        accepted = send(mailer, message("segunda"))  # on the kept connection: MAIL 2 gets the 421
        assert server.connections == 2
    assert accepted.reply.startswith("250")
    assert subjects(sink.received) == ["primeira", "segunda"]
    assert sink.commands.count("MAIL") == 3


def test_a_421_to_mail_on_a_fresh_connection_is_a_temporary_failure_not_retried() -> None:
    sink = AnswersMail({1: "421 4.3.2 too busy, try later"})
    with serving(sink) as server, SmtpMailer(server.url()) as mailer:
        with pytest.raises(TemporaryMailError, match=r"421 4\.3\.2 too busy"):
            send(mailer, message("primeira"))
        assert server.connections == 1
    assert sink.commands == ["MAIL"]
    assert sink.received == []


def test_a_421_again_after_reconnecting_is_a_temporary_failure_not_a_third_try() -> None:
    sink = AnswersMail({2: "421 4.3.2 closing", 3: "421 4.3.2 still closing"})
    with serving(sink) as server, SmtpMailer(server.url()) as mailer:
        send(mailer, message("primeira"))
        with pytest.raises(TemporaryMailError, match="still closing"):
            send(mailer, message("segunda"))
        assert server.connections == 2
    assert sink.commands.count("MAIL") == 3
    assert subjects(sink.received) == ["primeira"]


# 4. Answers to MAIL and to the end of data: permanent or temporary


@pytest.mark.parametrize("reused", [False, True], ids=["fresh-connection", "kept-connection"])
def test_a_5xx_to_mail_is_permanent_and_a_4xx_temporary(reused: bool) -> None:
    first = 2 if reused else 1
    sink = AnswersMail({first: "550 5.7.1 sender rejected", first + 1: "451 4.3.0 greylisted"})
    with serving(sink) as server, SmtpMailer(server.url()) as mailer:
        if reused:
            send(mailer, message("aquecimento"))
        with pytest.raises(PermanentMailError, match=r"550 5\.7\.1 sender rejected"):
            send(mailer, message("recusada"))
        with pytest.raises(TemporaryMailError, match=r"451 4\.3\.0 greylisted") as temporary:
            send(mailer, message("adiada"))
        send(mailer, message("aceita"))
    assert not temporary.value.unreachable
    warm_up = ["MAIL", f"RCPT {ANA}", "DATA"] if reused else []
    assert sink.commands == [*warm_up, "MAIL", "MAIL", "MAIL", f"RCPT {ANA}", "DATA"]  # no RCPT after a refused MAIL
    assert subjects(sink.received) == [*(["aquecimento"] if reused else []), "aceita"]


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ("554 5.6.0 content rejected", PermanentMailError),
        ("552 5.3.4 message too big", PermanentMailError),
        ("451 4.3.0 try again later", TemporaryMailError),
        ("452 4.3.1 insufficient storage", TemporaryMailError),
    ],
)
def test_the_answer_to_the_end_of_data_decides_permanent_or_temporary(answer: str, error: type[MailError]) -> None:
    sink = AnswersData(answer)
    with (
        serving(sink) as server,
        SmtpMailer(server.url()) as mailer,
        pytest.raises(error, match=answer[:9]) as failure,
    ):
        send(mailer, message("primeira"))
    assert type(failure.value) is error
    if isinstance(failure.value, TemporaryMailError):
        assert not failure.value.unreachable
    assert len(sink.received) == 1  # it got there: only the answer refused it


# 5. Refused recipients


def test_all_recipients_refused_resets_the_transaction_and_keeps_the_connection() -> None:
    sink = Sink(refuse={ANA: "550 5.1.1 user unknown", BIA: "553 5.1.3 bad address"})
    with serving(sink) as server, SmtpMailer(server.url()) as mailer:
        with pytest.raises(PermanentMailError, match=r"550 5\.1\.1") as refused:
            send(mailer, message("ninguem"), ANA, BIA)
        assert BIA in str(refused.value)
        assert sink.commands == ["MAIL", f"RCPT {ANA}", f"RCPT {BIA}", "RSET"]
        assert sink.received == []
        accepted = send(mailer, message("alguem"), CAIO)
        assert server.connections == 1
    assert accepted.refused == {}
    assert subjects(sink.received) == ["alguem"]
    assert sink.commands[4:] == ["MAIL", f"RCPT {CAIO}", "DATA"]


def test_all_recipients_refused_with_a_temporary_answer_among_them_is_temporary() -> None:
    sink = Sink(refuse={ANA: "550 5.1.1 user unknown", BIA: "452 4.2.2 mailbox full"})
    with serving(sink) as server, SmtpMailer(server.url()) as mailer:
        with pytest.raises(TemporaryMailError, match="452") as refused:
            send(mailer, message("ninguem"), ANA, BIA)
        send(mailer, message("alguem"), CAIO)
        assert server.connections == 1
    assert not refused.value.unreachable
    assert "RSET" in sink.commands


def test_one_of_two_recipients_refused_delivers_to_the_other_and_names_the_refused_one() -> None:
    sink = Sink(refuse={ANA: "550 5.1.1 <ana@padaria.example>: user unknown"})
    with serving(sink) as server, SmtpMailer(server.url()) as mailer:
        accepted = send(mailer, message("para a bia"), ANA, BIA)
    assert accepted.reply.startswith("250")
    assert accepted.refused == {ANA: "550 5.1.1 <ana@padaria.example>: user unknown"}
    [got] = sink.received
    assert got.rcpt_tos == (BIA,)
    assert "RSET" not in sink.commands


# 6. The connection breaks off in the middle of a transaction


def test_a_connection_dropped_during_a_transaction_is_a_temporary_unreachable_failure_then_a_new_one_is_used() -> None:
    sink = DropsAfterData({1}, kept=False)
    with serving(sink) as server, SmtpMailer(server.url()) as mailer:
        with pytest.raises(TemporaryMailError) as dropped:
            send(mailer, message("primeira"))
        assert dropped.value.unreachable
        accepted = send(mailer, message("segunda"))
        assert server.connections == 2
    assert accepted.reply.startswith("250")
    assert subjects(sink.received) == ["segunda"]


def test_a_server_that_stopped_is_unreachable_and_once_back_the_next_send_reconnects() -> None:
    sink = Sink()
    port = free_port()
    url = f"smtp://127.0.0.1:{port}"

    def start() -> Controller:
        controller = Controller(sink, hostname="127.0.0.1", port=port, server_hostname="sink.test", ready_timeout=5)
        controller.start()
        return controller

    controller = start()
    with SmtpMailer(url) as mailer:
        send(mailer, message("primeira"))
        controller.stop()
        with pytest.raises(TemporaryMailError) as down:
            send(mailer, message("perdida"))
        assert down.value.unreachable
        controller = start()
        try:
            send(mailer, message("segunda"))
        finally:
            controller.stop()
    assert subjects(sink.received) == ["primeira", "segunda"]


def test_a_kept_connection_dropped_before_mail_was_answered_is_replaced_and_the_message_delivered_once() -> None:
    sink = DropsAtMail({2})
    with serving(sink) as server, SmtpMailer(server.url()) as mailer:
        send(mailer, message("primeira"))
        accepted = send(mailer, message("segunda"))  # the kept connection breaks off at MAIL: nothing handed over
        assert server.connections == 2
    assert accepted.reply.startswith("250")
    assert subjects(sink.received) == ["primeira", "segunda"]


def test_a_kept_connection_lost_after_the_message_was_handed_over_is_not_sent_again_at_once() -> None:
    """The server kept the message but the connection broke before its 250: the mailer cannot know, so it is a
    temporary failure (the job retries it later, with the same Message-ID), never a resend on a new connection."""
    sink = DropsAfterData({2}, kept=True)
    with serving(sink) as server, SmtpMailer(server.url()) as mailer:
        send(mailer, message("primeira"))
        with pytest.raises(TemporaryMailError) as dropped:
            send(mailer, message("segunda"))  # on the kept connection
        assert dropped.value.unreachable
        assert server.connections == 1
        send(mailer, message("terceira"))
        assert server.connections == 2
    assert subjects(sink.received) == ["primeira", "segunda", "terceira"]


# 7. A server that goes silent


def test_a_server_silent_at_mail_is_a_temporary_failure_within_the_command_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(regua.smtp, "COMMAND_SECONDS", 0.5)
    sink = SilentAtMail()
    with serving(sink) as server, SmtpMailer(server.url()) as mailer:
        began = time.monotonic()
        with pytest.raises(TemporaryMailError):
            send(mailer, message("primeira"))
        took = time.monotonic() - began
        assert sink.commands == ["MAIL"]
    assert 0.4 < took < 5


def test_a_server_that_never_greets_is_a_temporary_unreachable_failure_within_the_command_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(regua.smtp, "COMMAND_SECONDS", 0.5)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # the kernel completes the connection; nobody ever says 220
        port = listener.getsockname()[1]
        with SmtpMailer(f"smtp://127.0.0.1:{port}") as mailer:
            began = time.monotonic()
            with pytest.raises(TemporaryMailError) as silent:
                send(mailer, message("primeira"))
            took = time.monotonic() - began
    assert silent.value.unreachable
    assert took < 5


# 8. Addresses beyond ASCII


def test_a_non_ascii_recipient_to_a_server_without_smtputf8_is_permanent_and_nothing_is_sent() -> None:
    sink = Sink()
    with serving(sink, enable_SMTPUTF8=False) as server, SmtpMailer(server.url()) as mailer:
        with pytest.raises(PermanentMailError, match="SMTPUTF8"):
            send(mailer, message("para o joão"), BIA, JOAO)
        assert sink.commands == []
        send(mailer, message("para a bia"), BIA)  # the mailer goes on
    assert subjects(sink.received) == ["para a bia"]


def test_a_non_ascii_sender_to_a_server_without_smtputf8_is_permanent_and_nothing_is_sent() -> None:
    sink = Sink()
    with serving(sink, enable_SMTPUTF8=False) as server, SmtpMailer(server.url()) as mailer:
        with pytest.raises(PermanentMailError, match="SMTPUTF8"):
            send(mailer, message("do joão"), BIA, sender=JOAO)
        assert sink.commands == []


def test_a_non_ascii_address_to_a_server_with_smtputf8_is_sent_with_the_smtputf8_option() -> None:
    sink = Sink()
    with serving(sink, enable_SMTPUTF8=True) as server, SmtpMailer(server.url()) as mailer:
        accepted = send(mailer, message("para o joão", to=JOAO), JOAO, BIA)
        send(mailer, message("só ascii"), BIA)
    assert accepted.reply.startswith("250")
    utf8, ascii_only = sink.received
    assert utf8.rcpt_tos == (JOAO, BIA)
    assert "SMTPUTF8" in utf8.mail_options
    assert "SMTPUTF8" not in ascii_only.mail_options


# 9. TLS: STARTTLS and SMTPS, with AUTH, then the transactions on the encrypted transport


@dataclass(frozen=True)
class Certificates:
    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


def openssl(*arguments: str | Path) -> None:
    subprocess.run(["openssl", *map(str, arguments)], check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A throwaway CA and a server certificate it signed, for 127.0.0.1 and localhost (openssl's CLI)."""
    where = tmp_path_factory.mktemp("tls")
    ca, ca_key, cert, key, request = (where / name for name in ("ca.pem", "ca.key", "server.pem", "server.key", "csr"))
    extensions = where / "server.ext"
    extensions.write_text(
        "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature, keyEncipherment\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid, issuer\n"
    )
    key_options = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    ca_options = ("-x509", "-days", "2", "-addext", "basicConstraints=critical,CA:TRUE")
    openssl("req", *key_options, *ca_options, "-subj", "/CN=regua test CA", "-keyout", ca_key, "-out", ca)
    openssl("req", *key_options, "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", request)
    signing = ("-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2", "-extfile", extensions)
    openssl("x509", "-req", *signing, "-in", request, "-out", cert)
    return Certificates(ca, cert, key)


def authenticator(server: SMTP, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    good = isinstance(auth_data, LoginPassword) and auth_data == (USER.encode(), PASSWORD.encode())
    return AuthResult(success=good, handled=False)


class RequiresAuth(Sink):
    """Refuses MAIL before AUTH (for SMTPS, where aiosmtpd's own auth_required needs STARTTLS's TLS)."""

    async def handle_MAIL(self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        return await super().handle_MAIL(server, session, envelope, address, options)


@contextmanager
def tls_server(mode: str, certificates: Certificates, sink: Sink, **smtp: Any) -> Iterator[tuple[Server, str]]:
    """The server and its URL, with a {} for the credentials, for `mode`: "starttls" or "smtps"."""
    context = certificates.server_context()
    if mode == "starttls":
        smtp.update(tls_context=context, require_starttls=True, auth_required=True, authenticator=authenticator)
        url = "smtp://{}127.0.0.1:%d?starttls=true"
    else:  # TLS from the first byte: aiosmtpd takes AUTH there only with auth_require_tls off (RequiresAuth)
        smtp.update(ssl_context=context, auth_require_tls=False, authenticator=authenticator)
        url = "smtps://{}127.0.0.1:%d"
    with serving(sink, **smtp) as server:
        yield server, url % server.port


@pytest.fixture
def trusted_ca(certificates: Certificates, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test CA is the one this process trusts (SSL_CERT_FILE, read by Python's default context)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates.ca))


CREDENTIALS = f"{USER}:{PASSWORD.replace(' ', '%20')}@"
WRONG_CREDENTIALS = f"{USER}:errada@"


@pytest.mark.parametrize("mode", ["starttls", "smtps"])
def test_over_tls_with_auth_two_messages_go_on_the_one_encrypted_connection(
    mode: str, certificates: Certificates, trusted_ca: None
) -> None:
    sink = RequiresAuth()
    with tls_server(mode, certificates, sink) as (server, url), SmtpMailer(url.format(CREDENTIALS)) as mailer:
        first = send(mailer, message("primeira"))
        second = send(mailer, message("segunda"), BIA)  # on the transport handed over after TLS and AUTH
        assert server.connections == 1
    assert first.reply.startswith("250")
    assert second.reply.startswith("250")
    assert [(got.subject, got.rcpt_tos) for got in sink.received] == [("primeira", (ANA,)), ("segunda", (BIA,))]
    assert all(got.encrypted and got.authenticated for got in sink.received)


@pytest.mark.parametrize("mode", ["starttls", "smtps"])
def test_over_tls_a_wrong_password_is_a_temporary_unreachable_failure(
    mode: str, certificates: Certificates, trusted_ca: None
) -> None:
    sink = RequiresAuth()
    with (
        tls_server(mode, certificates, sink) as (_, url),
        SmtpMailer(url.format(WRONG_CREDENTIALS)) as mailer,
        pytest.raises(TemporaryMailError, match="535") as refused,
    ):
        send(mailer, message("primeira"))
    assert refused.value.unreachable
    assert sink.commands == []
    assert sink.received == []


@pytest.mark.parametrize("mode", ["starttls", "smtps"])
def test_over_tls_a_certificate_from_an_unknown_ca_is_not_trusted(
    mode: str, certificates: Certificates, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = tmp_path / "no-ca.pem"
    empty.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(empty))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    sink = RequiresAuth()
    with (
        tls_server(mode, certificates, sink) as (_, url),
        SmtpMailer(url.format(CREDENTIALS)) as mailer,
        pytest.raises(TemporaryMailError, match=r"(?i)certificate") as untrusted,
    ):
        send(mailer, message("primeira"))
    assert untrusted.value.unreachable
    assert sink.received == []


class DeafAfterQuit(SMTP):
    """Answers QUIT, then reads nothing more: the client's TLS close is never answered."""

    async def smtp_QUIT(self, arg: str) -> None:
        await self.push("221 2.0.0 Bye")
        assert isinstance(self.transport, asyncio.ReadTransport)
        self.transport.pause_reading()


def sent_then_closed(
    mode: str, certificates: Certificates, sink: Sink, smtp_class: type[SMTP], credentials: str, **smtp: Any
) -> tuple[Accepted | MailError, list[str]]:
    """One message through a mailer then closed: its answer, and the sockets the mailer left open (collected
    while the server still runs, so that what is found is the mailer's)."""
    with tls_server(mode, certificates, sink, smtp_class=smtp_class, **smtp) as (_, url):
        with SmtpMailer(url.format(credentials)) as mailer:
            [answer] = mailer.send_many([Outgoing(message("primeira"), SENDER, (ANA,))])
        left_open = collect_unclosed()
    collect_unclosed()  # and the server's side of it, once it has stopped
    return answer, left_open


@pytest.mark.parametrize("mode", ["starttls", "smtps"])
def test_closing_the_mailer_closes_its_tls_connection_even_when_the_server_does_not_answer_the_tls_close(
    mode: str, certificates: Certificates, trusted_ca: None
) -> None:
    sink = RequiresAuth()
    answer, left_open = sent_then_closed(mode, certificates, sink, DeafAfterQuit, CREDENTIALS)
    assert isinstance(answer, Accepted)
    assert len(sink.received) == 1
    assert left_open == []


class DeafAfterRefusedAuth(SMTP):
    """After refusing AUTH, reads nothing more: the client's TLS close is never answered."""

    async def smtp_AUTH(self, arg: str) -> None:
        await super().smtp_AUTH(arg)
        if self.session is not None and not self.session.authenticated:
            assert isinstance(self.transport, asyncio.ReadTransport)
            self.transport.pause_reading()


@pytest.mark.parametrize("mode", ["starttls", "smtps"])
def test_closing_the_mailer_closes_a_tls_connection_that_failed_to_open_even_when_the_server_does_not_answer(
    mode: str, certificates: Certificates, trusted_ca: None
) -> None:
    only_plain = {"auth_exclude_mechanism": ["LOGIN"]}  # one refusal, and the client gives up
    answer, left_open = sent_then_closed(
        mode, certificates, RequiresAuth(), DeafAfterRefusedAuth, WRONG_CREDENTIALS, **only_plain
    )
    assert isinstance(answer, TemporaryMailError)
    assert "535" in str(answer)
    assert left_open == []


# 10. send_many sends each message as the iterable yields it


def test_send_many_sends_the_first_message_before_the_iterable_yields_the_second() -> None:
    sink = Sink()
    seen_before_second: list[bool] = []

    def rendered() -> Iterator[Outgoing]:
        yield Outgoing(message("primeira"), SENDER, (ANA,))
        seen_before_second.append(eventually(lambda: len(sink.received) >= 1))
        yield Outgoing(message("segunda"), SENDER, (BIA,))

    with serving(sink) as server, SmtpMailer(server.url()) as mailer:
        answers = mailer.send_many(rendered())
    assert seen_before_second == [True]
    assert [type(answer) for answer in answers] == [Accepted, Accepted]
    assert subjects(sink.received) == ["primeira", "segunda"]


def test_send_many_answers_in_the_order_of_the_iterable() -> None:
    sink = Sink(refuse={BIA: "550 5.1.1 user unknown"})
    outgoing = [Outgoing(message(f"m{n}"), SENDER, (BIA if n == 1 else ANA,)) for n in range(3)]
    with serving(sink) as server, SmtpMailer(server.url()) as mailer:
        answers = mailer.send_many(iter(outgoing))
    assert [type(answer) for answer in answers] == [Accepted, PermanentMailError, Accepted]
    assert sorted(subjects(sink.received)) == ["m0", "m2"]


class RenderingFailed(Exception):
    pass


def test_an_iterable_that_raises_after_one_message_raises_out_of_send_many_and_the_message_still_goes() -> None:
    sink = Sink()

    def rendered() -> Iterator[Outgoing]:
        yield Outgoing(message("primeira"), SENDER, (ANA,))
        raise RenderingFailed("the second one could not be rendered")

    with serving(sink) as server, SmtpMailer(server.url()) as mailer:
        with pytest.raises(RenderingFailed):
            mailer.send_many(rendered())
        assert eventually(lambda: len(sink.received) == 1)
        after = send(mailer, message("depois"))  # the mailer is still usable
    assert after.reply.startswith("250")
    assert subjects(sink.received) == ["primeira", "depois"]


class SlowGreeting(Sink):
    """Takes its time to answer EHLO: a message is still on its way when the caller gives up."""

    async def handle_EHLO(
        self, server: SMTP, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        await asyncio.sleep(0.3)
        session.host_name = hostname
        return responses


def test_closing_the_mailer_right_after_send_many_raised_still_delivers_the_message_on_its_way() -> None:
    sink = SlowGreeting()

    def rendered() -> Iterator[Outgoing]:
        yield Outgoing(message("primeira"), SENDER, (ANA,))
        raise RenderingFailed("the second one could not be rendered")

    with serving(sink) as server:
        with pytest.raises(RenderingFailed), SmtpMailer(server.url()) as mailer:
            mailer.send_many(rendered())
        delivered = eventually(lambda: len(sink.received) == 1, seconds=3)
        left_open = collect_unclosed()
    collect_unclosed()
    assert delivered
    assert left_open == []


def test_batches_from_several_threads_share_at_most_the_mailers_connections_and_each_gets_its_own_answers() -> None:
    sink = Sink()
    answers: dict[int, list[Accepted | MailError]] = {}

    def batch(number: int, mailer: SmtpMailer) -> None:
        answers[number] = mailer.send_many(Outgoing(message(f"t{number}-{n}"), SENDER, (ANA,)) for n in range(3))

    with serving(sink) as server, SmtpMailer(server.url(), connections=2) as mailer:
        threads = [threading.Thread(target=batch, args=(number, mailer)) for number in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        assert server.connections <= 2
    assert sorted(answers) == [0, 1, 2]
    assert all(len(mine) == 3 and all(isinstance(answer, Accepted) for answer in mine) for mine in answers.values())
    assert sorted(subjects(sink.received)) == sorted(f"t{t}-{n}" for t in range(3) for n in range(3))
