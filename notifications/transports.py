"""Email transports: ``smtp`` (STARTTLS, implicit TLS or plain) and ``file`` (.eml files).

A transport sends one message to one recipient and says how it went by raising:

    TransientDeliveryError     try this member again later (SMTP 4xx, dropped connection)
    └── TransportUnavailable   the server as a whole cannot be used now (refused connection,
                               TLS or login failure, 421): stop this run, retry later,
                               nobody's attempt is counted
    PermanentDeliveryError     give up on this member (SMTP 5xx)

The SMTP password comes only from the environment variable named by
``email.smtp.password_env``; the config model refuses a password in ``config.toml``.
"""

from __future__ import annotations

import contextlib
import os
import re
import smtplib
import ssl
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

from notifications.email import Outgoing
from watcher.config import Config, SmtpSection
from watcher.exceptions import PermanentDeliveryError, TransientDeliveryError


class TransportUnavailable(TransientDeliveryError):
    """The mail server cannot be used at all right now; retry the whole run later."""


class Transport(Protocol):
    """What the exactly-once sender needs of a transport."""

    def send(self, message: Outgoing, sender: str, recipient: str) -> None:
        """Deliver one message to one recipient or raise a ``DeliveryError``."""

    def close(self) -> None:
        """Let go of connections (safe to call more than once)."""


class _Closing:
    def close(self) -> None:
        return None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class FileTransport(_Closing):
    """Writes each message to ``<outbox>/<Message-ID>.eml`` (the embedded default).

    The file name comes from the deterministic Message-ID and is written atomically, so a
    repeated send of one member's copy finds its file and writes nothing twice."""

    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox

    def path_for(self, message: Outgoing) -> Path:
        mid = str(message["Message-ID"] or "").strip("<>")
        name = _UNSAFE_NAME.sub("_", mid)[:200] or "message"
        return self.outbox / f"{name}.eml"

    def send(self, message: Outgoing, sender: str, recipient: str) -> None:
        target = self.path_for(message)
        if target.exists():
            return
        try:
            self.outbox.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.outbox, prefix=".tmp-", suffix=".eml")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(message.as_bytes())
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as e:
            raise TransportUnavailable(f"cannot write to the outbox {self.outbox}: {e}") from e


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _smtp_error(
    code: int, message: bytes | str, what: str
) -> TransientDeliveryError | PermanentDeliveryError:
    text = _text(message)
    detail = f"{what}: {code} {text}".strip()
    if code == 421:
        return TransportUnavailable(detail)
    if 400 <= code < 500:
        return TransientDeliveryError(detail)
    if 500 <= code < 600:
        return PermanentDeliveryError(detail)
    return TransientDeliveryError(detail)


class SmtpTransport(_Closing):
    """SMTP with one connection reused for a whole run.

    ``security``: ``starttls`` (upgrade a plain connection, refused when the server does
    not offer it), ``tls`` (implicit TLS, port 465) or ``none`` (a local relay)."""

    def __init__(
        self,
        settings: SmtpSection,
        *,
        password: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        self.settings = settings
        self._password = password
        self.ssl_context = ssl_context
        self.local_hostname = local_hostname
        self._conn: smtplib.SMTP | None = None

    def _context(self) -> ssl.SSLContext:
        return self.ssl_context or ssl.create_default_context()

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        try:
            conn: smtplib.SMTP
            if s.security == "tls":
                conn = smtplib.SMTP_SSL(
                    s.host,
                    s.port,
                    timeout=s.timeout,
                    context=self._context(),
                    local_hostname=self.local_hostname,
                )
            else:
                conn = smtplib.SMTP(
                    s.host, s.port, timeout=s.timeout, local_hostname=self.local_hostname
                )
            try:
                conn.ehlo()
                if s.security == "starttls":
                    if not conn.has_extn("starttls"):
                        raise TransportUnavailable(
                            f"{s.host}:{s.port} does not offer STARTTLS; set "
                            "email.smtp.security to 'tls' or (a local relay only) 'none'"
                        )
                    conn.starttls(context=self._context())
                    conn.ehlo()
                if s.username:
                    password = self._password
                    if password is None:
                        password = os.environ.get(s.password_env)
                    if not password:
                        raise TransportUnavailable(
                            f"email.smtp.username is set but the environment variable "
                            f"{s.password_env} holding the password is not"
                        )
                    conn.login(s.username, password)
            except BaseException:
                _quietly_close(conn)
                raise
        except TransportUnavailable:
            raise
        except smtplib.SMTPAuthenticationError as e:
            raise TransportUnavailable(f"SMTP login failed: {e.smtp_code} {e.smtp_error!r}") from e
        except smtplib.SMTPResponseException as e:
            raise TransportUnavailable(
                f"SMTP server {s.host}:{s.port} refused the session: {e.smtp_code} "
                f"{_text(e.smtp_error)}"
            ) from e
        except (smtplib.SMTPException, OSError, ssl.SSLError) as e:
            raise TransportUnavailable(
                f"cannot connect to SMTP server {s.host}:{s.port}: {e}"
            ) from e
        return conn

    def send(self, message: Outgoing, sender: str, recipient: str) -> None:
        if self._conn is None:
            self._conn = self._connect()
        conn = self._conn
        try:
            conn.sendmail(sender, [recipient], message.as_bytes())
            return
        except smtplib.SMTPRecipientsRefused as e:
            code, resp = next(iter(e.recipients.values()), (451, b"refused"))
            err = _smtp_error(code, resp, f"recipient {recipient} refused")
        except smtplib.SMTPSenderRefused as e:
            err = _smtp_error(e.smtp_code, e.smtp_error, f"sender {sender} refused")
        except smtplib.SMTPResponseException as e:
            err = _smtp_error(e.smtp_code, e.smtp_error, "message refused")
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPException, OSError) as e:
            # The connection broke mid-message: the server did not take it; try again later.
            self.close()
            raise TransientDeliveryError(f"connection lost while sending: {e}") from e
        if isinstance(err, TransportUnavailable):
            self.close()
        else:
            try:
                conn.rset()
            except (smtplib.SMTPException, OSError):
                self.close()
        raise err

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            _quietly_close(conn)


def _quietly_close(conn: smtplib.SMTP) -> None:
    try:
        conn.quit()
    except (smtplib.SMTPException, OSError):
        with contextlib.suppress(OSError):
            conn.close()


def make_transport(config: Config) -> FileTransport | SmtpTransport:
    """The transport the config asks for."""
    if config.email.backend == "smtp":
        return SmtpTransport(config.email.smtp)
    return FileTransport(config.resolve_path(config.email.outbox))
