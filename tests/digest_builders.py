"""Builders shared by the digest, delivery, feed and calendar tests (no tests in here).

- ``ItemBuilder``: stores items through the real ``Storage.apply`` and ``set_tags`` (new
  items, notable updates), so tests see what a poll would have written;
- ``SmtpSink``: a real SMTP server (aiosmtpd) on loopback that can refuse recipients
  (4xx/5xx), refuse messages, drop the connection part-way, or hold one message until the
  test has killed the sender; ``accepted`` lists what it really took.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from watcher.storage import Storage
from watcher.types import (
    Classification,
    Evidence,
    FieldChange,
    Item,
    Kind,
    NewItem,
    PollResult,
    PollStatus,
    Status,
    Tag,
    Updated,
)


class ItemBuilder:
    """Adds and changes stored items as a poll would, at the clock's time."""

    def __init__(self, storage: Storage, clock: Callable[[], datetime]) -> None:
        self.storage = storage
        self.clock = clock
        self.items: dict[int, Item] = {}

    def add(
        self,
        key: str,
        title: str | None = None,
        *,
        source: str = "src",
        kind: str = "call",
        status: str | None = "open",
        deadlines: Sequence[datetime] = (),
        opening: datetime | None = None,
        areas: Sequence[str] = ("fonder-program",),
        themes: Sequence[str] = ("arbetsmarknad",),
        relevant: bool = True,
        baseline: bool = False,
        held: bool = False,
        link: str | None = None,
        programme: str | None = "ESF+",
        summary: str = "",
    ) -> int:
        item = Item(
            source_id=source,
            key=key,
            title=title or f"Utlysning {key}",
            link=link if link is not None else f"https://example.se/{key}",
            summary=summary,
            language="sv",
            kind=Kind(kind),
            status=Status(status) if status else None,
            programme=programme,
            identifier=None,
            published=None,
            opening=opening,
            deadlines=tuple(sorted(deadlines)),
            budget=None,
            budget_amount=None,
            currency=None,
            regions=(),
            topics=(),
            content_hash=f"h-{key}-0",
        )
        result = PollResult(source, PollStatus.OK, new=1)
        out = self.storage.apply(
            source,
            [NewItem(item, baseline=baseline, held=held)],
            result,
            self.clock(),
        )
        [item_id] = out.new_ids
        self.items[item_id] = item
        self.tag(item_id, areas, themes, relevant)
        return item_id

    def tag(
        self, item_id: int, areas: Sequence[str], themes: Sequence[str], relevant: bool = True
    ) -> None:
        tags = tuple(
            Tag(kind, t, f"{t}-rule", (Evidence("title", t[:6]),))
            for kind, values in (("area", areas), ("theme", themes))
            for t in values
        )
        self.storage.set_tags(item_id, Classification(tags, relevant), self.clock())

    def change(self, item_id: int, **values: Any) -> None:
        """A notable update (deadlines, status, title …) recorded as a poll records it."""
        old = self.items[item_id]
        conv: dict[str, Any] = {}
        for k, v in values.items():
            if k == "status":
                conv[k] = Status(v) if v else None
            elif k == "deadlines":
                conv[k] = tuple(sorted(v))
            else:
                conv[k] = v
        n = sum(1 for _ in self.items)
        new = dataclasses.replace(old, content_hash=f"h-{old.key}-{n}-{self.clock()}", **conv)

        def js(name: str, item: Item) -> Any:
            v = getattr(item, name)
            if name == "deadlines":
                return [d.isoformat() for d in v]
            if isinstance(v, datetime):
                return v.isoformat()
            return getattr(v, "value", v)

        changes = tuple(FieldChange(k, js(k, old), js(k, new)) for k in values)
        result = PollResult(old.source_id, PollStatus.OK, updated=1)
        self.storage.apply(
            old.source_id,
            [Updated(new, item_id, changes)],
            result,
            self.clock(),
        )
        self.items[item_id] = new


# -- a real SMTP server ---------------------------------------------------------------------


@dataclass
class Accepted:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.content, policy=policy.default)  # type: ignore[return-value]


@dataclass
class SmtpSink:
    """What the server does: ``rcpt`` maps an address to a reply (``"450 …"``, ``"550 …"``);
    ``data`` is called with the message's number (1-based) and may return a reply (to
    refuse it), or ``"drop"`` to close the connection without answering; ``hold`` is a
    message number whose DATA is held until ``release`` (the test kills the sender
    meanwhile) and is then refused."""

    rcpt: dict[str, str] = field(default_factory=dict)
    data: Callable[[int], str | None] = lambda n: None
    hold: int | None = None
    accepted: list[Accepted] = field(default_factory=list)
    rcpt_attempts: list[str] = field(default_factory=list)
    attempts: int = 0
    holding: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        self.rcpt_attempts.append(address.lower())
        reply = self.rcpt.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts += 1
        n = self.attempts
        if self.hold == n:
            self.holding.set()
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 30)
            return "451 4.3.0 the client went away"
        reply = self.data(n)
        if reply == "drop":
            server.transport.close()  # the connection breaks before the server answers
            return "421 4.4.2 connection dropped"
        if reply:
            return reply
        self.accepted.append(
            Accepted(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
        )
        return "250 2.0.0 accepted"

    def count(self) -> dict[str, int]:
        """How many messages each recipient got."""
        out: dict[str, int] = {}
        for a in self.accepted:
            for r in a.rcpt_tos:
                out[r.lower()] = out.get(r.lower(), 0) + 1
        return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningSmtp:
    sink: SmtpSink
    host: str
    port: int

    def settings(self, **kw: Any) -> Mapping[str, Any]:
        return {"host": self.host, "port": self.port, "security": "none", "timeout": 10, **kw}


def start_smtp(sink: SmtpSink, **server_kwargs: Any) -> Iterator[RunningSmtp]:
    """Run ``sink`` as a real SMTP server on 127.0.0.1 until the generator is closed."""
    port = free_port()
    ctl = Controller(sink, hostname="127.0.0.1", port=port, **server_kwargs)
    ctl.start()
    try:
        yield RunningSmtp(sink, "127.0.0.1", port)
    finally:
        sink.release.set()
        ctl.stop()
