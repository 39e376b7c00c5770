"""Building one member's copy of a digest as an email message.

Headers never carry untrusted text unchecked: the subject and display names are folded to
one line (``text.one_line``), addresses must be one plain address each, and the standard
library's header encoder refuses any CR or LF that would remain. The Message-ID is
deterministic (digest id + address), so a resumed or repeated send of one member's copy
carries the same Message-ID and a receiving system can recognise it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr

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
    return f'"{name}" <{network_id}.digest.{domain}>'


def build_message(
    *,
    sender: Sender,
    to: str,
    subject: str,
    html: str,
    text: str,
    message_id: str,
    list_id: str,
    unsubscribe_url: str,
    date: datetime,
) -> EmailMessage:
    """One multipart/alternative message (text, then HTML) with the list headers of
    RFC 2369 and RFC 8058 one-click unsubscribe. A bad address is a permanent failure of
    this delivery only."""
    try:
        address = validate_email(to)
    except ValueError as e:
        raise PermanentDeliveryError(str(e)) from e
    if any(c in unsubscribe_url for c in "\r\n<> "):
        raise PermanentDeliveryError("the unsubscribe link is not a plain URL")
    user, domain = address.rsplit("@", 1)
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = sender.header()
    msg["To"] = Address(username=user, domain=domain)
    msg["Subject"] = one_line(subject, 250)
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id
    msg["List-Id"] = list_id
    msg["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["Auto-Submitted"] = "auto-generated"
    msg["Precedence"] = "bulk"
    msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    return msg
