"""Admin alerts: tell the admin when something breaks, once per transition.

What is reported (``kind``), and where it is noticed:

=================  ============================================  ==============================
kind               when                                          noticed by
=================  ============================================  ==============================
source_failing     ``[admin] alert_after_failures`` (3) failed   ``record_poll_events`` (the
                   polls in a row; open until it recovers        App's ``polled`` hook, after
source_recovered   the first good poll after that; closes it     every poll is recorded)
layout_changed     a "layout changed?" warning appears; open
                   until the warning is gone (closed quietly)
flood_held         a poll held a flood for the admin; open
                   until no item of the source is held
delivery_failed    a digest to one address failed for good       ``notifications.delivery``
digest_missed      a digest slot missed beyond the grace         ``notifications.schedule``
=================  ============================================  ==============================

Deciding is pure (``source_events``): what the admin has been told and not yet seen
resolved (the open events) plus the source's health now gives the events to record and the
ones to close. The memory is the events table, not the health before the poll: a poll from
the CLI or another process, or a crash between recording a poll and checking it, can then
neither drop a transition nor repeat one, and the table's ``key`` makes recording
idempotent across processes (``watcher.storage.events``). A fourth failure finds the
failing event open and records nothing.

Sending (``send_alerts``; the scheduler calls it after each poll, after digest runs and
every minute for retries): each event row is the unit, claimed by one sender; every
address in ``[admin] alert_emails`` gets one message through the digests' transport
(``[email] backend``: the outbox files or SMTP) with a deterministic Message-ID, and every
Apprise URL in ``[admin] alert_urls`` one notification. The targets reached are recorded
one by one, so a retry after a transient failure (``[email] retry_delay`` × 2ⁿ, at most
``[email] max_attempts``) never tells anyone twice. Apprise is loaded only when URLs are
set. Apprise URLs carry tokens: they are named by position and scheme only
(``redact_alert_url``) in errors, logs and pages.

Alerts are written in Swedish, like the interface's default; the admin page
(``/admin/events``) shows them in either language.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from watcher.config import Config
from watcher.exceptions import (
    ConfigError,
    PermanentDeliveryError,
    StorageError,
    TransientDeliveryError,
)
from watcher.storage import Storage
from watcher.storage.events import FAILED, SENT, AdminEvent, NewEvent
from watcher.types import PollResult, PollStatus

if TYPE_CHECKING:
    # Imported where used instead: the App registers ``alert_hook`` in every process, and
    # a ``watcher poll`` should not load the scheduler (``ports``), the mail transports or
    # Babel (``labels``) or the email package to record that nothing happened.
    from notifications.email import Outgoing, Sender
    from notifications.ports import Host
    from notifications.transports import Transport

log = logging.getLogger(__name__)

SOURCE_FAILING = "source_failing"
SOURCE_RECOVERED = "source_recovered"
LAYOUT_CHANGED = "layout_changed"
FLOOD_HELD = "flood_held"
DELIVERY_FAILED = "delivery_failed"
DIGEST_MISSED = "digest_missed"
KINDS = (
    SOURCE_FAILING,
    SOURCE_RECOVERED,
    LAYOUT_CHANGED,
    FLOOD_HELD,
    DELIVERY_FAILED,
    DIGEST_MISSED,
)
SOURCE_KINDS = frozenset({SOURCE_FAILING, LAYOUT_CHANGED, FLOOD_HELD})

# What the pipeline writes (watcher/pipeline/layout.py, arrivals.py); tests/test_alerts.py
# pins both against the real stages.
LAYOUT_MARK = "layout changed?"
FLOOD_MARK = "held for the admin"

# How long a claim on one event lasts (a sender that dies leaves it to the next one).
LEASE = timedelta(minutes=10)


def open_key(kind: str, subject: str) -> str:
    """The key of an open problem: one at a time per kind and subject."""
    return f"{kind}:{subject}"


# -- deciding (pure) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceHealth:
    """A source's health after a poll, as far as alerts care."""

    source_id: str
    failures: int = 0
    error_code: str | None = None
    error_message: str | None = None
    warning: str | None = None  # the source's stored warnings, "; "-joined
    flood: str | None = None  # this poll's note that it held a flood
    held: int | None = None  # the source's held items now (None: not read)


@dataclass(frozen=True)
class Decision:
    """What to record: new events (a recovery closes its failing event itself) and the
    keys of open events to close quietly."""

    new: tuple[NewEvent, ...] = ()
    resolve: tuple[str, ...] = ()


def layout_warning(warning: str | None) -> str | None:
    """The "layout changed?" parts of a source's warning text, if any."""
    parts = [p for p in (warning or "").split("; ") if p.startswith(LAYOUT_MARK)]
    return "; ".join(parts) or None


def flood_note(warnings: Sequence[str]) -> str | None:
    """A poll's note that it held a flood for the admin, if it did."""
    return next((w for w in warnings if FLOOD_MARK in w), None)


def source_events(opened: Collection[str], health: SourceHealth, *, threshold: int) -> Decision:
    """The transitions of one source: ``opened`` are the kinds of its open events (what
    the admin has been told), ``health`` its state now. Pure."""
    sid = health.source_id
    new: list[NewEvent] = []
    resolve: list[str] = []
    failing = health.failures >= threshold
    if failing and SOURCE_FAILING not in opened:
        new.append(
            NewEvent(
                SOURCE_FAILING,
                sid,
                open_key(SOURCE_FAILING, sid),
                health.error_message,
                {"failures": health.failures, "code": health.error_code},
            )
        )
    elif health.failures == 0 and SOURCE_FAILING in opened:
        new.append(NewEvent(SOURCE_RECOVERED, sid, None, resolves=open_key(SOURCE_FAILING, sid)))
    layout = layout_warning(health.warning)
    if layout and LAYOUT_CHANGED not in opened:
        new.append(NewEvent(LAYOUT_CHANGED, sid, open_key(LAYOUT_CHANGED, sid), layout))
    elif not layout and LAYOUT_CHANGED in opened:
        resolve.append(open_key(LAYOUT_CHANGED, sid))
    if health.flood and FLOOD_HELD not in opened:
        new.append(
            NewEvent(
                FLOOD_HELD,
                sid,
                open_key(FLOOD_HELD, sid),
                health.flood,
                {"held": health.held} if health.held is not None else {},
            )
        )
    elif not health.flood and health.held == 0 and FLOOD_HELD in opened:
        resolve.append(open_key(FLOOD_HELD, sid))
    return Decision(tuple(new), tuple(resolve))


# -- recording ---------------------------------------------------------------------------------


def has_targets(config: Config) -> bool:
    return bool(config.admin.alert_emails or config.admin.alert_urls)


def record_poll_events(host: Host, results: Sequence[PollResult]) -> list[AdminEvent]:
    """After polls were recorded: record each polled source's transitions (the App's
    ``polled`` hook). Returns the events recorded; sending is ``send_alerts``'s."""
    polled = [r for r in results if r.status != PollStatus.SKIPPED]
    if not polled:
        return []
    storage = host.storage
    ids = {r.source_id for r in polled}
    opened: dict[str, set[str]] = {}
    # Every open problem, few by nature, rather than a query naming thousands of sources.
    for e in storage.open_events():
        if e.kind in SOURCE_KINDS and e.subject in ids:
            opened.setdefault(e.subject, set()).add(e.kind)
    states = storage.source_troubles(ids)
    # Held items are counted only when a flood is open (to see it released).
    held = storage.held_counts() if any(FLOOD_HELD in k for k in opened.values()) else {}
    threshold = host.config.admin.alert_after_failures
    new: list[NewEvent] = []
    resolve: list[str] = []
    for r in polled:
        state = states.get(r.source_id)
        if state is None:
            continue
        health = SourceHealth(
            r.source_id,
            failures=state.consecutive_failures,
            error_code=state.last_error_code,
            error_message=state.last_error_message,
            warning=state.warning,
            flood=flood_note(r.warnings),
            held=held.get(r.source_id, 0) if FLOOD_HELD in opened.get(r.source_id, ()) else None,
        )
        decision = source_events(opened.get(r.source_id, set()), health, threshold=threshold)
        new.extend(decision.new)
        resolve.extend(decision.resolve)
    if not new and not resolve:
        return []
    recorded = storage.record_events(
        new, host.now(), resolve=resolve, send=has_targets(host.config)
    )
    for e in recorded:
        log.warning("admin alert: %s", alert_text(e, host.config).subject)
    return recorded


def alert_hook(host: Host) -> Callable[[Sequence[PollResult]], None]:
    """``record_poll_events`` as the App's ``polled`` hook."""

    def hook(results: Sequence[PollResult]) -> None:
        record_poll_events(host, results)

    return hook


def record_delivery_failed(
    host: Host, *, network_id: str, address: str, delivery_id: int, attempt: int, error: str
) -> list[AdminEvent]:
    """A digest to one address failed for good (``notifications.delivery``)."""
    event = NewEvent(
        DELIVERY_FAILED,
        network_id,
        f"{DELIVERY_FAILED}:{delivery_id}:{attempt}",
        error,
        {"address": address, "delivery": delivery_id},
    )
    return _record(host, [event])


def record_digest_missed(
    host: Host, *, network_id: str, first: datetime, last: datetime, count: int
) -> list[AdminEvent]:
    """Scheduled digests of a network were missed beyond the grace
    (``notifications.schedule``)."""
    event = NewEvent(
        DIGEST_MISSED,
        network_id,
        f"{DIGEST_MISSED}:{network_id}:{last.isoformat()}",
        None,
        {"first": first.isoformat(), "last": last.isoformat(), "count": count},
    )
    return _record(host, [event])


def _record(host: Host, events: Sequence[NewEvent]) -> list[AdminEvent]:
    """Record; a storage error is logged, never raised into the work that noticed it."""
    try:
        recorded = host.storage.record_events(events, host.now(), send=has_targets(host.config))
    except StorageError:
        log.exception("could not record the admin alert(s) %s", [e.key for e in events])
        return []
    for e in recorded:
        log.warning("admin alert: %s", alert_text(e, host.config).subject)
    return recorded


# -- wording -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertText:
    subject: str
    body: str


def _source_name(config: Config, source_id: str) -> str:
    source = config.sources_by_id.get(source_id)
    return source.name if source is not None else source_id


def _network_name(config: Config, network_id: str) -> str:
    return next((n.name for n in config.networks if n.id == network_id), network_id)


def _local(config: Config, iso: Any) -> str:
    """A recorded instant as the admin reads it: ``2 november 2026 kl. 08:00``, local."""
    try:
        when = datetime.fromisoformat(str(iso))
    except ValueError:
        return str(iso)
    from notifications.labels import format_datetime as local_datetime

    return local_datetime(when, "sv", config.tz, whole_days=False)


def _count(value: Any) -> str:
    """A recorded count (``failures``, ``count``) as Swedish writes it; anything else as it
    is."""
    from notifications.labels import format_number

    return format_number(value, "sv") if isinstance(value, int) else str(value)


def alert_text(event: AdminEvent, config: Config) -> AlertText:
    """The subject and plain text of an alert (Swedish)."""
    d = event.details
    base = config.watcher.base_url.rstrip("/")
    if event.kind in (SOURCE_FAILING, SOURCE_RECOVERED, LAYOUT_CHANGED, FLOOD_HELD):
        name = _source_name(config, event.subject)
        link = f"{base}/admin/sources/{event.subject}"
    else:
        name = _network_name(config, event.subject)
        link = f"{base}/admin/deliveries"
    if event.kind == SOURCE_FAILING:
        subject = f"Källan {name} har misslyckats {_count(d.get('failures'))} gånger i rad"
        lines = [f"Fel: {d.get('code') or '?'}", event.message or ""]
    elif event.kind == SOURCE_RECOVERED:
        subject = f"Källan {name} fungerar igen"
        lines = ["Den senaste hämtningen lyckades."]
    elif event.kind == LAYOUT_CHANGED:
        subject = f"Källan {name}: sidans uppbyggnad kan ha ändrats"
        lines = [event.message or ""]
    elif event.kind == FLOOD_HELD:
        subject = f"Källan {name}: ovanligt många nya poster hålls kvar"
        lines = [event.message or "", "Släpp eller kasta dem under Källor."]
    elif event.kind == DELIVERY_FAILED:
        subject = f"Utskicket till {d.get('address')} ({name}) misslyckades"
        lines = [event.message or ""]
    elif event.kind == DIGEST_MISSED:
        subject = f"Nätverket {name}: {_count(d.get('count'))} schemalagda utskick missades"
        lines = [
            f"Från {_local(config, d.get('first'))} till {_local(config, d.get('last'))}, "
            "medan tjänsten inte var igång.",
            "Nästa utskick tar med allt som inte har skickats.",
        ]
        link = f"{base}/admin/networks"
    else:
        subject, lines = f"{event.kind}: {event.subject}", [event.message or ""]
    body = "\n".join(
        [*(line for line in lines if line), "", link, f"Alla händelser: {base}/admin/events", ""]
    )
    return AlertText(f"EU-bevakning: {subject}", body)


def alert_message(
    event: AdminEvent, text: AlertText, sender: Sender, to: str, when: datetime
) -> Outgoing:
    """One address's copy of an alert; its Message-ID is the same on every attempt."""
    from email.message import EmailMessage
    from email.policy import SMTP
    from email.utils import format_datetime

    from notifications.email import Outgoing

    h = hashlib.sha256(f"{event.id}\n{to.lower()}".encode()).hexdigest()[:20]
    msg = EmailMessage(policy=SMTP.clone(max_line_length=998))
    msg["From"] = sender.header()
    msg["To"] = to
    msg["Subject"] = " ".join(text.subject.split())[:250]
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = f"<alert.{event.id}.{h}@{sender.domain}>"
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text.body)
    head, body = msg.as_bytes().split(b"\r\n\r\n", 1)
    return Outgoing(head + b"\r\n", body)


# -- sending -----------------------------------------------------------------------------------

Notify = Callable[[str, str, str], None]
"""Send one notification to an Apprise URL (url, title, body); raise a ``DeliveryError``."""


def apprise_notify(url: str, title: str, body: str) -> None:
    """One notification through Apprise. Imported here, not at the top: Apprise takes
    half a second to load, and only a service with ``alert_urls`` needs it."""
    import apprise

    ap = apprise.Apprise()
    if not ap.add(url):
        raise PermanentDeliveryError("not a URL Apprise supports")
    if not ap.notify(body=body, title=title):
        raise TransientDeliveryError("the service did not take the notification")


def redact_alert_url(url: str, index: int | None = None) -> str:
    """An Apprise URL as it may be shown: its position and scheme (``alert_urls[2]
    (msteams)``), never the tokens in it."""
    scheme = url.split("://", 1)[0] if "://" in url else "?"
    where = f"alert_urls[{index}]" if index is not None else "alert_urls"
    return f"{where} ({scheme})"


@dataclass(frozen=True)
class Target:
    id: str  # what ``sent_to`` records: never an Apprise URL (it holds tokens)
    label: str  # for errors and logs
    address: str | None = None
    url: str | None = None


def targets(config: Config) -> list[Target]:
    out = [Target(f"email:{a.lower()}", a, address=a) for a in config.admin.alert_emails]
    for i, url in enumerate(config.admin.alert_urls):
        digest = hashlib.sha256(url.encode()).hexdigest()[:16]
        out.append(Target(f"url:{digest}", redact_alert_url(url, i), url=url))
    return out


@dataclass
class SendReport:
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    errors: list[str] = field(default_factory=list)


class _Stop(Exception):
    """The mail server cannot be used now: leave every event for a later run."""


def send_alerts(
    host: Host,
    *,
    transport: Transport | None = None,
    notify: Notify | None = None,
) -> SendReport:
    """Send every due alert once (see the module docstring)."""
    report = SendReport()
    config = host.config
    storage = host.storage
    due = storage.due_events(host.now())
    if not due:
        return report
    own = transport is None
    try:
        for event_id in due:
            claimed = storage.claim_event(event_id, host.now(), LEASE)
            if claimed is None:
                continue  # another sender has it
            if transport is None and config.admin.alert_emails:
                from notifications.transports import make_transport

                transport = make_transport(config)
            try:
                _send_event(host, storage, claimed, transport, notify, report)
            except _Stop as e:
                report.errors.append(str(e))
                break
    finally:
        if own and transport is not None:
            transport.close()
    return report


def _send_event(
    host: Host,
    storage: Storage,
    event: AdminEvent,
    transport: Transport | None,
    notify: Notify | None,
    report: SendReport,
) -> None:
    from notifications.email import Sender
    from notifications.transports import TransportUnavailable

    config = host.config
    text = alert_text(event, config)
    permanent: list[str] = []
    transient: list[str] = []
    sender: Sender | None = None
    for t in targets(config):
        if t.id in event.sent_to:
            continue
        try:
            if t.address is not None:
                if sender is None:
                    try:
                        sender = Sender.parse(config.email.sender)
                    except ValueError as e:
                        raise ConfigError(f"email.sender: {e}") from e
                assert transport is not None
                msg = alert_message(event, text, sender, t.address, event.at)
                transport.send(msg, sender.address, t.address)
            else:
                assert t.url is not None
                (notify or apprise_notify)(t.url, text.subject, text.body)
        except TransportUnavailable as e:
            storage.retry_event(
                event.id,
                str(e),
                host.now() + timedelta(seconds=config.email.retry_delay),
                count=False,
            )
            report.deferred += 1
            log.warning("alert %s: the mail server is unavailable: %s", event.id, e)
            raise _Stop(str(e)) from e
        except PermanentDeliveryError as e:
            permanent.append(f"{t.label}: {e}")
            continue
        except (TransientDeliveryError, ConfigError) as e:
            transient.append(f"{t.label}: {e}")
            continue
        except Exception as e:  # an Apprise plugin's bug must not stop the others
            log.exception("alert %s to %s failed", event.id, t.label)
            transient.append(f"{t.label}: {e.__class__.__name__}")
            continue
        storage.mark_event_target(event.id, t.id)
    now = host.now()
    errors = "; ".join([*permanent, *transient]) or None
    if transient and event.send_attempts < config.email.max_attempts:
        delay = config.email.retry_delay * (2 ** (event.send_attempts - 1))
        storage.retry_event(event.id, errors or "", now + timedelta(seconds=delay))
        report.deferred += 1
    elif errors:
        storage.finish_event(event.id, FAILED, errors, now)
        report.failed += 1
        log.warning("alert %s could not be sent: %s", event.id, errors)
    else:
        storage.finish_event(event.id, SENT, None, now)
        report.sent += 1
    if errors:
        report.errors.append(errors)


__all__ = [
    "KINDS",
    "AlertText",
    "Decision",
    "SendReport",
    "SourceHealth",
    "alert_text",
    "flood_note",
    "layout_warning",
    "record_delivery_failed",
    "record_digest_missed",
    "record_poll_events",
    "redact_alert_url",
    "send_alerts",
    "source_events",
]
