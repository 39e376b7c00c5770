"""The SMTP transport's security modes and login against aiosmtpd on loopback: STARTTLS,
implicit TLS, plain; the password only from the environment."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from notifications.email import Outgoing, Sender, build_message, list_id
from notifications.transports import SmtpTransport, TransportUnavailable
from tests.conftest import T0
from tests.digest_builders import SmtpSink, start_smtp
from tests.loopback import self_signed
from watcher.config import SmtpSection, validate_data
from watcher.exceptions import ConfigError, PermanentDeliveryError, TransientDeliveryError


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"), "IP:127.0.0.1")


def server_context(cert: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


def client_context(cert: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert[0]))


class Users:
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            ok = self.users.get(data.login.decode()) == data.password.decode()
            return AuthResult(success=ok, handled=False)
        return AuthResult(success=False, handled=False)


def message(to: str = "a@kommun.se") -> Outgoing:
    sender = Sender.parse("EU <eu@goteborgsregionen.se>")
    return build_message(
        sender=sender,
        to=to,
        subject="Test",
        html="<p>hej</p>",
        text="hej",
        message_id="<t1@goteborgsregionen.se>",
        list_id=list_id("n", "N", sender.domain),
        unsubscribe_url="https://x.se/u/1",
        date=T0,
    )


@pytest.fixture
def running() -> Iterator[Any]:
    gens: list[Any] = []

    def start(sink: SmtpSink, **kw: Any) -> Any:
        g = start_smtp(sink, **kw)
        gens.append(g)
        return next(g)

    yield start
    for g in gens:
        g.close()


def test_starttls_with_login_from_the_environment(cert, running, monkeypatch):
    sink = SmtpSink()
    srv = running(
        sink,
        tls_context=server_context(cert),
        require_starttls=True,
        authenticator=Users({"eu-bevakning": "s3cret"}),
        auth_require_tls=True,
    )
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret")
    settings = SmtpSection(
        **srv.settings(
            security="starttls", username="eu-bevakning", password_env="TEST_SMTP_PASSWORD"
        )
    )
    with SmtpTransport(settings, ssl_context=client_context(cert)) as t:
        t.send(message(), "eu@goteborgsregionen.se", "a@kommun.se")
        t.send(message("b@kommun.se"), "eu@goteborgsregionen.se", "b@kommun.se")
    assert sink.count() == {"a@kommun.se": 1, "b@kommun.se": 1}


def test_wrong_or_missing_password_makes_the_server_unavailable(cert, running, monkeypatch):
    srv = running(
        SmtpSink(),
        tls_context=server_context(cert),
        authenticator=Users({"eu-bevakning": "s3cret"}),
    )
    settings = SmtpSection(
        **srv.settings(
            security="starttls", username="eu-bevakning", password_env="TEST_SMTP_PASSWORD"
        )
    )
    monkeypatch.delenv("TEST_SMTP_PASSWORD", raising=False)
    with pytest.raises(TransportUnavailable, match="TEST_SMTP_PASSWORD"):
        SmtpTransport(settings, ssl_context=client_context(cert)).send(
            message(), "eu@x.se", "a@kommun.se"
        )
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "wrong")
    with pytest.raises(TransportUnavailable, match="login failed"):
        SmtpTransport(settings, ssl_context=client_context(cert)).send(
            message(), "eu@x.se", "a@kommun.se"
        )


def test_starttls_required_but_not_offered(running):
    srv = running(SmtpSink())  # no TLS configured on the server
    t = SmtpTransport(SmtpSection(**srv.settings(security="starttls")))
    with pytest.raises(TransportUnavailable, match="STARTTLS"):
        t.send(message(), "eu@x.se", "a@kommun.se")


def test_untrusted_certificate_is_refused(cert, running):
    srv = running(SmtpSink(), tls_context=server_context(cert))
    t = SmtpTransport(SmtpSection(**srv.settings(security="starttls")))  # system CAs only
    with pytest.raises(TransportUnavailable):
        t.send(message(), "eu@x.se", "a@kommun.se")


def test_implicit_tls(cert, running):
    sink = SmtpSink()
    srv = running(sink, ssl_context=server_context(cert))
    with SmtpTransport(
        SmtpSection(**srv.settings(security="tls")), ssl_context=client_context(cert)
    ) as t:
        t.send(message(), "eu@x.se", "a@kommun.se")
    assert sink.count() == {"a@kommun.se": 1}


def test_reply_codes_are_classified(running):
    sink = SmtpSink(rcpt={"busy@x.se": "452 4.2.2 over quota", "gone@x.se": "550 5.1.1 unknown"})
    srv = running(sink)
    with SmtpTransport(SmtpSection(**srv.settings())) as t:
        with pytest.raises(TransientDeliveryError, match="452"):
            t.send(message(), "eu@x.se", "busy@x.se")
        with pytest.raises(PermanentDeliveryError, match="550"):
            t.send(message(), "eu@x.se", "gone@x.se")
        t.send(message(), "eu@x.se", "ok@x.se")  # the session is still usable
    assert sink.count() == {"ok@x.se": 1}


def test_a_password_in_config_is_a_config_error():
    with pytest.raises(ConfigError, match="password"):
        validate_data({"email": {"backend": "smtp", "smtp": {"host": "h", "password": "x"}}})
