"""Building one member's copy of a digest as an email message.

Headers never carry untrusted text unchecked: the subject and display names are folded to
one line (``text.one_line``), addresses must be one plain address each, and the standard
library's header encoder refuses any CR or LF that would remain. The Message-ID is
deterministic (digest id + address), so a resumed or repeated send of one member's copy
carries the same Message-ID and a receiving system can recognise it.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser
from email.policy import SMTP
from email.utils import format_datetime, parseaddr
from functools import cached_property
from html import escape as html_escape

from notifications.text import one_line
from watcher.config import validate_email
from watcher.exceptions import PermanentDeliveryError

# Long list headers (a signed URL) must stay one unencoded line: fold only past 998.
_POLICY = SMTP.clone(max_line_length=998)
_SENDER_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$")


@dataclass(frozen=True)
class Sender:
    """The From of every digest: a display name and one address."""

    name: str
    address: str

    @classmethod
    def parse(cls, text: str) -> Sender:
        name, addr = parseaddr(one_line(text))
        # A local relay's sender may have a one-label domain (eu-bevakning@localhost).
        if not _SENDER_RE.match(addr):
            raise ValueError(f"{text!r} is not one sender address like 'Name <user@host>'")
        return cls(one_line(name, 100).replace('"', "'"), addr)

    @property
    def domain(self) -> str:
        return self.address.rsplit("@", 1)[1].lower()

    def header(self) -> Address:
        user, domain = self.address.rsplit("@", 1)
        return Address(display_name=self.name, username=user, domain=domain)


def message_id(network_id: str, window_end: datetime, address: str, domain: str) -> str:
    """``<digest.gr-eu.20261102T070000Z.3f9c…@domain>``: the same for the same network,
    window and member (a network's window end is unique), known before anything is sent."""
    stamp = window_end.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    h = hashlib.sha256(f"{network_id}\n{stamp}\n{address.lower()}".encode()).hexdigest()
    return f"<digest.{network_id}.{stamp}.{h[:20]}@{domain}>"


def list_id(network_id: str, network_name: str, domain: str) -> str:
    """RFC 2919 List-Id: ``"GR:s EU-nätverk" <gr-eu-natverk.digest.example.se>``."""
    name = one_line(network_name, 80)
    for c in '\\"<>':
        name = name.replace(c, "")
    if name.isascii():
        return f'"{name}" <{network_id}.digest.{domain}>'
    # A non-ASCII name is one RFC 2047 encoded word (never inside quotes).
    from email.header import Header

    return f"{Header(name, 'utf-8').encode()} <{network_id}.digest.{domain}>"


@dataclass(frozen=True)
class Outgoing:
    """One member's message, ready to send: the header block and the encoded body, both
    bytes with CRLF line ends. Indexing reads a header: ``msg["Message-ID"]``."""

    head: bytes
    body: bytes

    @cached_property
    def headers(self) -> Message:
        return BytesHeaderParser(policy=policy.default).parsebytes(self.head)

    def __getitem__(self, name: str) -> str | None:
        value = self.headers[name]
        return None if value is None else str(value)

    def as_bytes(self) -> bytes:
        return self.head + b"\r\n" + self.body


def _qp(text: str) -> bytes:
    """Quoted-printable (C codec) with CRLF line ends."""
    encoded = binascii.b2a_qp(text.encode("utf-8"), quotetabs=False, istext=True, header=False)
    return encoded.replace(b"\n", b"\r\n")


class QpTemplate:
    """A text encoded once as quoted-printable except the lines holding ``placeholder``,
    which are encoded per fill. Quoted-printable works line by line, so encoding the parts
    between line breaks separately gives the same bytes as encoding the whole: one large
    digest is encoded once, and each member's copy costs one short line."""

    def __init__(self, content: str, placeholder: str = "") -> None:
        text = content.replace("\r\n", "\n").replace("\r", "\n")
        self.placeholder = placeholder
        self.pieces: list[bytes | str] = []
        pos = 0
        while placeholder and (i := text.find(placeholder, pos)) >= 0:
            start = max(text.rfind("\n", pos, i) + 1, pos)
            end = text.find("\n", i + len(placeholder))
            end = len(text) if end < 0 else end + 1
            if start > pos:
                self.pieces.append(_qp(text[pos:start]))
            self.pieces.append(text[start:end])
            pos = end
        if pos < len(text):
            self.pieces.append(_qp(text[pos:]))

    def fill(self, value: str = "") -> bytes:
        return b"".join(
            p if isinstance(p, bytes) else _qp(p.replace(self.placeholder, value))
            for p in self.pieces
        )


@dataclass(frozen=True)
class BodyTemplate:
    """The text and HTML parts of a digest with a placeholder for each member's link."""

    text: QpTemplate
    html: QpTemplate

    @classmethod
    def of(cls, text: str, html: str, placeholder: str = "") -> BodyTemplate:
        return cls(QpTemplate(text, placeholder), QpTemplate(html, placeholder))

    def body(self, boundary: str, url: str) -> bytes:
        sep = f"--{boundary}\r\n".encode()
        return b"".join(
            (
                sep,
                _part_head("plain"),
                self.text.fill(url),
                b"\r\n",
                sep,
                _part_head("html"),
                self.html.fill(html_escape(url, quote=True)),
                b"\r\n",
                f"--{boundary}--\r\n".encode(),
            )
        )


def _part_head(subtype: str) -> bytes:
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    ).encode()


_ASCII_SAFE = re.compile(r"^[\x21-\x7e]+$")


class MessageFactory:
    """Builds each member's copy of one digest.

    The headers every copy shares (From, Subject, Date, List-Id …) are checked and folded
    by the standard library once; the ones that differ per member (To, Message-ID,
    List-Unsubscribe, the MIME boundary) are plain ASCII checked here. Nothing scraped can
    reach a header unchecked: the subject and names were folded to one line, addresses
    must be one plain address, and the standard library refuses a remaining CR or LF."""

    def __init__(
        self,
        *,
        sender: Sender,
        subject: str,
        list_id: str,
        date: datetime,
        template: BodyTemplate,
    ) -> None:
        common = EmailMessage(policy=_POLICY)
        common["From"] = sender.header()
        common["Subject"] = one_line(subject, 250)
        common["Date"] = format_datetime(date)
        common["List-Id"] = list_id
        common["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        common["Auto-Submitted"] = "auto-generated"
        common["Precedence"] = "bulk"
        common["MIME-Version"] = "1.0"
        self._common = b"".join(_POLICY.fold_binary(k, v) for k, v in common.items())
        self.template = template

    def build(self, *, to: str, message_id: str, unsubscribe_url: str) -> Outgoing:
        """One member's copy; a bad address is a permanent failure of this delivery."""
        try:
            address = validate_email(to)
        except ValueError as e:
            raise PermanentDeliveryError(str(e)) from e
        if not _ASCII_SAFE.match(unsubscribe_url) or any(c in unsubscribe_url for c in "<>\"'"):
            raise PermanentDeliveryError("the unsubscribe link is not a plain URL")
        if not _ASCII_SAFE.match(message_id):
            raise PermanentDeliveryError(f"not a Message-ID: {message_id!r}")
        # "=_" never occurs in quoted-printable text ("=" is always followed by hex or a
        # line end), so this boundary cannot collide with the content.
        boundary = "=_eu-bevakning_" + hashlib.sha256(message_id.encode()).hexdigest()[:24]
        own = (
            f"To: {address}\r\n"
            f"Message-ID: {message_id}\r\n"
            f"List-Unsubscribe: <{unsubscribe_url}>\r\n"
            f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n'
        ).encode("ascii")
        return Outgoing(self._common + own, self.template.body(boundary, unsubscribe_url))


def build_message(
    *,
    sender: Sender,
    to: str,
    subject: str,
    message_id: str,
    list_id: str,
    unsubscribe_url: str,
    date: datetime,
    html: str = "",
    text: str = "",
    template: BodyTemplate | None = None,
) -> Outgoing:
    """One multipart/alternative message (text, then HTML) with the list headers of
    RFC 2369 and RFC 8058 one-click unsubscribe. The parts come from ``template`` (its
    placeholder replaced by ``unsubscribe_url``) or from ``text`` and ``html`` as given.
    For many members of one digest, make one ``MessageFactory`` and call ``build``."""
    factory = MessageFactory(
        sender=sender,
        subject=subject,
        list_id=list_id,
        date=date,
        template=template or BodyTemplate.of(text, html),
    )
    return factory.build(to=to, message_id=message_id, unsubscribe_url=unsubscribe_url)
