"""Exactly-once digests: record first, then send each member's copy once.

For each network a run

1. resumes the network's unfinished digests (a crash, a refused connection or a 4xx
   left deliveries open): each open delivery that is due is claimed and sent;
2. under the network's digest lock, builds the next digest (``digest.build_digest``),
   and records it with one delivery per member *in one transaction* before anything is
   sent. Each delivery has a deterministic Message-ID. The window ``(last digest, now]``
   is unique per network, and what a digest introduced is never introduced again, so a
   second trigger (the scheduler and a by-hand run, or a double click) finds nothing new;
3. sends the new digest's deliveries the same way as in 1.

Sending one delivery: claim it (only one sender wins; the claim is a lease, so a sender
that dies leaves it claimable again once the lease runs out), send, then record the
outcome: ``sent``; a 4xx goes back to ``pending`` with exponential back-off until
``email.max_attempts``; a 5xx marks it ``failed`` for the admin; an unreachable server
stops the run with every open delivery left as it was. The one unavoidable gap: a crash
after the server accepted a message and before ``sent`` was written means that member's
copy goes out again on resume, with the same Message-ID (so the receiving side can drop
it). The gap is one database write long.

A run needs from the service only a ``notifications.ports.DeliveryHost`` (config, storage,
the clock, refreshing statuses): callers pass the ``App``, which has those.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from notifications.alerts import record_delivery_failed
from notifications.digest import Digest, build_digests, build_for
from notifications.email import MessageFactory, Sender, list_id, message_id
from notifications.ports import DeliveryHost
from notifications.render import EntryCache, render_digest, subject_for
from notifications.subscriptions import (
    PreferenceLinks,
    personal_networks,
    subscribed_scopes,
    with_subscribers,
)
from notifications.transports import Transport, TransportUnavailable, make_transport
from notifications.unsubscribe import Unsubscriber
from watcher.config import NetworkConfig
from watcher.exceptions import (
    ConfigError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from watcher.storage.deliveries import (
    CANCELLED,
    FAILED,
    OPEN_STATUSES,
    OPTED_OUT,
    PENDING,
    DeliveryRecord,
    DeliveryStore,
    DigestRecord,
    NewDelivery,
    lock_name,
)
from watcher.types import StoredItem

log = logging.getLogger(__name__)

# How long a claim on one delivery lasts: longer than any single SMTP exchange can take
# (each step is bounded by email.smtp.timeout), so only a dead sender's claim runs out.
LEASE = timedelta(minutes=10)
# The digest lock covers building and recording a digest only (seconds).
BUILD_LOCK_TTL = timedelta(minutes=10)


@dataclass
class NetworkOutcome:
    """What a run did for one network (``as_json`` is the CLI's ``--json`` object)."""

    network: str
    new: int = 0
    updated: int = 0
    closing_soon: int = 0
    recipients: int = 0
    sent: int = 0
    failed: int = 0
    deferred: int = 0  # left for a later run (4xx back-off, server unreachable)
    skipped_reason: str | None = None
    digest_id: int | None = None
    digest: Digest | None = None
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "new": self.new,
            "updated": self.updated,
            "closing_soon": self.closing_soon,
            "recipients": self.recipients,
            "sent": self.sent,
            "skipped_reason": self.skipped_reason,
        }


class _StopRun(Exception):
    """The server is unreachable: leave everything open for a later run."""


class DigestSender:
    """Runs digests for a host (the ``App``) with one transport (opened lazily, closed by
    ``close``)."""

    def __init__(self, app: DeliveryHost, transport: Transport | None = None) -> None:
        self.app = app
        self.store = DeliveryStore(app.storage)
        self._transport = transport
        self._own_transport = transport is None
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._unsub: Unsubscriber | None = None
        self._sender: Sender | None = None
        self._factories: dict[int, MessageFactory] = {}
        # Entries rendered once per run, whichever digests show them (``render_digests``).
        self._entries: EntryCache = {}
        # People's own digests (id -> matcher) and who gets a preferences link: self-service
        # subscribers (``notifications.subscriptions``).
        self._only: dict[str, Callable[[StoredItem], bool]] = {}
        self._prefs: PreferenceLinks | None = None
        self._subscribed: set[tuple[str, str]] | None = None

    # -- plumbing --------------------------------------------------------------------------

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            self._transport = make_transport(self.app.config)
        return self._transport

    @property
    def unsubscriber(self) -> Unsubscriber:
        if self._unsub is None:
            self._unsub = Unsubscriber.for_app(self.app)
        return self._unsub

    @property
    def sender(self) -> Sender:
        if self._sender is None:
            try:
                self._sender = Sender.parse(self.app.config.email.sender)
            except ValueError as e:
                raise ConfigError(f"email.sender: {e}") from e
        return self._sender

    def close(self) -> None:
        if self._transport is not None and self._own_transport:
            self._transport.close()
            self._transport = None

    def __enter__(self) -> DigestSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _configured(self) -> list[NetworkConfig]:
        """The configured networks, their confirmed subscribers among the members."""
        return with_subscribers(self.app.config.networks, self.app.storage)

    def _networks(self, ids: Sequence[str] | None) -> list[NetworkConfig]:
        nets = self._configured()
        if not ids:
            return nets
        known = {n.id: n for n in nets}
        missing = [i for i in ids if i not in known]
        if missing:
            raise ConfigError(f"unknown network(s): {', '.join(missing)}")
        return [known[i] for i in ids]

    # -- runs ------------------------------------------------------------------------------

    def preview(self, network_ids: Sequence[str] | None = None) -> list[NetworkOutcome]:
        """What a run would do now, recording and sending nothing (``--dry-run``)."""
        nets = self._networks(network_ids)
        digests = build_digests(self.app, [n.id for n in nets], self.app.now())
        out = []
        for net, d in zip(nets, digests, strict=True):
            o = self._counts(NetworkOutcome(net.id, digest=d), d)
            opted = self.store.opted_out(net.id)
            o.recipients = sum(1 for m in net.members if m.lower() not in opted)
            if not net.enabled:
                o.skipped_reason = "disabled"
            elif not net.members:
                o.skipped_reason = "no members"
            elif d.is_empty:
                o.skipped_reason = "nothing new"
            else:
                o.skipped_reason = "dry run"
            out.append(o)
        return out

    def run(self, network_ids: Sequence[str] | None = None) -> list[NetworkOutcome]:
        """Resume, build, record and send each network's digest (all networks by default).
        Stored statuses are brought up to date first, so that a call that opened since the
        last poll is reported as such (a preview only reads)."""
        return self._run(self._networks(network_ids))

    def run_personal(self, frequency: str | None = None) -> list[NetworkOutcome]:
        """The same for people's own digests (areas and themes, saved searches) of one
        frequency (``daily``/``weekly``; all by default)."""
        nets = []
        for net, matcher in personal_networks(self.app.storage, self.app.config, frequency):
            self._only[net.id] = matcher
            nets.append(net)
        return self._run(nets)

    def _run(self, nets: Sequence[NetworkConfig]) -> list[NetworkOutcome]:
        self.app.refresh_statuses()
        outcomes = []
        stopped = False
        due: list[tuple[NetworkConfig, NetworkOutcome]] = []
        for net in nets:
            o = NetworkOutcome(net.id)
            outcomes.append(o)
            if not net.enabled:
                o.skipped_reason = "disabled"
                continue
            try:
                if not stopped:
                    for rec in self.store.unfinished_digests(net.id):
                        self._send_digest(rec, net, o)
            except _StopRun as e:
                stopped = True
                o.errors.append(str(e))
                continue
            if not net.members:
                o.skipped_reason = "no members"
                continue
            due.append((net, o))
        self._new_digests(due)
        for net, o in due:
            if o.digest_id is None or stopped:
                continue
            try:
                fresh = self.store.get_digest(o.digest_id)
                if fresh is not None and fresh.status == "sending":
                    self._send_digest(fresh, net, o)
            except _StopRun as e:
                stopped = True
                o.errors.append(str(e))
        return outcomes

    def resume(self, network_ids: Sequence[str] | None = None) -> list[NetworkOutcome]:
        """Send what earlier runs left open; build nothing new (the service does this on
        start and when a back-off delay has passed)."""
        outcomes = []
        known = {n.id: n for n in self._configured()}
        for own, matcher in personal_networks(self.app.storage, self.app.config):
            known[own.id] = own
            self._only[own.id] = matcher
        wanted = set(network_ids) if network_ids else None
        by_net: dict[str, NetworkOutcome] = {}
        try:
            for rec in self.store.unfinished_digests():
                if wanted is not None and rec.network_id not in wanted:
                    continue
                net = known.get(rec.network_id)
                if net is None or not net.enabled:
                    continue  # a removed or disabled network: left for the admin to see
                o = by_net.get(net.id)
                if o is None:
                    o = by_net[net.id] = NetworkOutcome(net.id)
                    outcomes.append(o)
                self._send_digest(rec, net, o)
        except _StopRun as e:
            log.warning("digest sending stopped: %s", e)
        return outcomes

    # -- building and recording ------------------------------------------------------------

    @staticmethod
    def _counts(o: NetworkOutcome, d: Digest) -> NetworkOutcome:
        o.new, o.updated = d.total("new"), d.total("updated")
        o.closing_soon = d.total("closing_soon")
        return o

    def _new_digests(self, due: Sequence[tuple[NetworkConfig, NetworkOutcome]]) -> None:
        """Build the next digest of each network, under their digest locks, together (one
        reading of the items for all, at one ``now``), and record each with its
        deliveries in one transaction. A network whose lock another process holds is
        skipped."""
        if not due:
            return
        storage = self.app.storage
        names = {lock_name(net.id): (net, o) for net, o in due}
        taken = storage.acquire_locks(names, self.holder, BUILD_LOCK_TTL, self.app.now())
        try:
            mine: list[tuple[NetworkConfig, NetworkOutcome]] = []
            for name, (net, o) in names.items():
                if name in taken:
                    mine.append((net, o))
                else:
                    o.skipped_reason = "another process is building this network's digest"
            if not mine:
                return
            now = self.app.now()
            only = {n.id: self._only[n.id] for n, _ in mine if n.id in self._only}
            digests = build_for(self.app, [n for n, _ in mine], now, only or None)
            for (net, o), digest in zip(mine, digests, strict=True):
                self._record(net, o, digest, now)
        finally:
            storage.release_locks(taken, self.holder)

    def _record(self, net: NetworkConfig, o: NetworkOutcome, digest: Digest, now: datetime) -> None:
        """Record a digest built under the network's lock (see ``_new_digests``)."""
        o.digest = digest
        self._counts(o, digest)
        if digest.is_empty:
            self.store.record_digest(
                net.id,
                window_start=digest.window_start,
                window_end=digest.window_end,
                created_at=now,
                subject=None,
                item_ids=(),
                payload=digest.to_payload(),
                recipients=(),
                seen=digest.seen,
            )
            o.skipped_reason = "nothing new"
            return
        opted = self.store.opted_out(net.id)
        domain = self.sender.domain
        recipients = [
            NewDelivery(
                address=m,
                message_id=message_id(net.id, digest.window_end, m, domain),
                status=OPTED_OUT if m.lower() in opted else PENDING,
            )
            for m in net.members
        ]
        digest_id, created = self.store.record_digest(
            net.id,
            window_start=digest.window_start,
            window_end=digest.window_end,
            created_at=now,
            subject=subject_for(digest),
            item_ids=digest.item_ids,
            payload=digest.to_payload(),
            recipients=recipients,
            seen=digest.seen,
        )
        o.digest_id = digest_id
        o.recipients = sum(1 for r in recipients if r.status == PENDING)
        if not created:
            o.skipped_reason = "this window was recorded already"

    # -- sending ---------------------------------------------------------------------------

    def _factory_for(self, rec: DigestRecord) -> MessageFactory:
        """Render a digest once per run (from its stored payload, so a resumed send shows
        what the first attempt showed) and prepare what all members' copies share."""
        f = self._factories.get(rec.id)
        if f is None:
            rendered = render_digest(
                Digest.from_payload(rec.payload), self.app.config.tz, self._entries
            )
            f = self._factories[rec.id] = MessageFactory(
                sender=self.sender,
                subject=rec.subject or rendered.subject,
                list_id=list_id(rec.network_id, rendered_name(rec), self.sender.domain),
                date=rec.created_at,
                template=rendered.template,
            )
        return f

    def _send_digest(self, rec: DigestRecord, net: NetworkConfig, o: NetworkOutcome) -> None:
        members = {m.lower() for m in net.members}
        opted = self.store.opted_out(net.id)
        # A copy just sent: its "sent" is written in the next claim's transaction (one
        # write per copy, and still before anything else is sent), or at the end.
        sent: int | None = None
        try:
            for d in self.store.deliveries(rec.id):
                if d.status not in OPEN_STATUSES:
                    continue
                addr = d.address.lower()
                if addr in opted or addr not in members:
                    if sent is not None:
                        self.store.mark_sent(sent, self.app.now())
                        sent = None
                    if addr in opted:
                        self.store.mark_final(d.id, OPTED_OUT, "opted out before it was sent")
                    else:
                        self.store.mark_final(d.id, CANCELLED, "no longer a member of the network")
                    continue
                claimed = self.store.claim(d.id, self.app.now(), LEASE, sent=sent)
                sent = None
                if claimed is None:
                    o.deferred += 1  # not due yet, or another sender has it
                    continue
                if self._send_one(rec, claimed, o):
                    sent = claimed.id
        finally:
            if sent is not None:
                self.store.mark_sent(sent, self.app.now())
        self.store.finish_if_done(rec.id)

    def _send_one(self, rec: DigestRecord, d: DeliveryRecord, o: NetworkOutcome) -> bool:
        """Send one claimed copy and record a failure; True when the server took it (the
        caller writes "sent")."""
        cfg = self.app.config.email
        try:
            factory = self._factory_for(rec)
            url = self._link(rec.network_id, d.address)
            msg = factory.build(to=d.address, message_id=d.message_id, unsubscribe_url=url)
            self.transport.send(msg, self.sender.address, d.address)
        except TransportUnavailable as e:
            self.store.mark_retry(
                d.id, str(e), self.app.now() + timedelta(seconds=cfg.retry_delay), count=False
            )
            o.deferred += 1
            log.warning("mail server unavailable; digest %s stays open: %s", rec.id, e)
            raise _StopRun(str(e)) from e
        except PermanentDeliveryError as e:
            self.store.mark_final(d.id, FAILED, str(e))
            o.failed += 1
            log.warning("delivery of digest %s to %s failed: %s", rec.id, d.address, e)
            self._failed_for_good(rec, d, str(e))
            return False
        except (TransientDeliveryError, Exception) as e:
            if not isinstance(e, TransientDeliveryError):
                log.exception("unexpected error sending digest %s to %s", rec.id, d.address)
            if d.attempts >= cfg.max_attempts:
                error = f"gave up after {d.attempts} attempts: {e}"
                self.store.mark_final(d.id, FAILED, error)
                o.failed += 1
                self._failed_for_good(rec, d, error)
            else:
                delay = cfg.retry_delay * (2 ** (d.attempts - 1))
                self.store.mark_retry(d.id, str(e), self.app.now() + timedelta(seconds=delay))
                o.deferred += 1
            return False
        o.sent += 1
        return True

    def _failed_for_good(self, rec: DigestRecord, d: DeliveryRecord, error: str) -> None:
        """Tell the admin (``notifications.alerts``): recorded here, sent by the
        scheduler's alert sending, once."""
        record_delivery_failed(
            self.app,
            network_id=rec.network_id,
            address=d.address,
            delivery_id=d.id,
            attempt=d.attempts,
            error=error,
        )

    def _link(self, digest_of: str, address: str) -> str:
        """A member's unsubscribe link; a self-service subscriber's preferences link."""
        if self._subscribed is None:
            self._subscribed = subscribed_scopes(self.app.storage)
        if (digest_of, address.lower()) in self._subscribed:
            if self._prefs is None:
                self._prefs = PreferenceLinks.for_app(self.app)
            return self._prefs.url(address, digest_of)
        return self.unsubscriber.url(digest_of, address)


def rendered_name(rec: DigestRecord) -> str:
    return str(rec.payload.get("network_name") or rec.network_id)


def run_digests(
    app: DeliveryHost,
    network_ids: Sequence[str] | None = None,
    *,
    dry_run: bool = False,
    transport: Transport | None = None,
) -> list[NetworkOutcome]:
    """One digest run (the CLI and the scheduled job): see the module docstring."""
    with DigestSender(app, transport) as sender:
        return sender.preview(network_ids) if dry_run else sender.run(network_ids)


def run_personal_digests(
    app: DeliveryHost, frequency: str | None = None, *, transport: Transport | None = None
) -> list[NetworkOutcome]:
    """One run of people's own digests (of one frequency, or all)."""
    with DigestSender(app, transport) as sender:
        return sender.run_personal(frequency)


def resume_digests(
    app: DeliveryHost,
    network_ids: Sequence[str] | None = None,
    *,
    transport: Transport | None = None,
) -> list[NetworkOutcome]:
    """Send what earlier runs left open, building nothing new."""
    with DigestSender(app, transport) as sender:
        return sender.resume(network_ids)


__all__ = [
    "LEASE",
    "DigestSender",
    "NetworkOutcome",
    "resume_digests",
    "run_digests",
    "run_personal_digests",
]
