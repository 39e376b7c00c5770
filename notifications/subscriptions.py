"""People who subscribe themselves: sign-up with double opt-in, preferences links, and
subscribers joining digests.

A person signs up at ``/prenumerera`` with an address and one choice: a network's digest,
areas and themes, or a saved search ("bevakning"). ``sign_up`` stores the choice as
pending and mails a confirmation link (through the configured transport: the file outbox,
or SMTP); nothing is active until the link's page is confirmed (a POST: a mail system's
link scanner that only GETs confirms nothing). The answer is the same whether or not the
address has subscribed before, so the form tells nobody who subscribes.

Once confirmed:

- a **network** subscriber joins the network's recipients (``with_subscribers``), so its
  digest, recorded with one delivery per address before sending, reaches them exactly once;
- **areas and themes** and **saved searches** make up the person's own digest, a
  network-like value (``personal_network``: id ``p-<key>``, every area and theme) whose
  items are narrowed by ``personal_matcher`` (pure). It is built by the same selection and
  sent by the same exactly-once machinery, daily or weekly (``[subscriptions]
  daily_schedule`` / ``weekly_schedule``).

Every digest a subscriber gets carries a signed link to their preferences page
(``PreferenceLinks``, like the unsubscribe links: no expiry, the key of
``notifications.unsubscribe.secret_key``) in place of the unsubscribe link, and a POST of
``List-Unsubscribe=One-Click`` to it ends the choices behind that digest.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from notifications.email import Outgoing, Sender
from notifications.labels import TAG_NAMES, lang_of
from notifications.ports import Host
from notifications.transports import Transport, make_transport
from notifications.unsubscribe import read_pair, secret_key, sign_pair
from watcher.config import Config, NetworkConfig, validate_email
from watcher.exceptions import ConfigError
from watcher.storage import Storage
from watcher.storage.subscriptions import (
    PERSONAL_PREFIX,
    Choice,
    Subscriber,
    confirm_hash,
)
from watcher.types import StoredItem

log = logging.getLogger(__name__)

SALT = "eu-bevakning/preferences/v1"
ALL = "*"  # a preferences token's scope: every choice of the person

# -- who may sign up ------------------------------------------------------------------------


def domain_allowed(address: str, config: Config) -> bool:
    """Whether ``[subscriptions] allowed_domains`` lets this address sign up (a listed
    domain or one of its subdomains; any domain when the list is empty)."""
    allowed = config.subscriptions.allowed_domains
    if not allowed:
        return True
    domain = address.rsplit("@", 1)[-1].strip().lower()
    return any(domain == d or domain.endswith("." + d) for d in allowed)


# -- signed links -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PreferenceLinks:
    """Makes and reads preferences tokens: the address and the digest the link came in
    (a network id, ``p-<key>`` or ``*``), signed; no expiry."""

    secret: str
    base_url: str

    @classmethod
    def for_app(cls, app: Host) -> PreferenceLinks:
        return cls(secret_key(app), app.config.watcher.base_url.rstrip("/"))

    def token(self, address: str, scope: str = ALL) -> str:
        return sign_pair(self.secret, SALT, address.strip().lower(), scope)

    def url(self, address: str, scope: str = ALL) -> str:
        return f"{self.base_url}/prenumerera/installningar/{self.token(address, scope)}"

    def read(self, token: str) -> tuple[str, str] | None:
        """(address, scope) of a valid token; None for anything forged or garbled."""
        return read_pair(self.secret, SALT, token)


def confirmation_token(subscription_id: int, secret: str) -> str:
    return f"{subscription_id}.{secret}"


def read_confirmation(token: str) -> tuple[int, str] | None:
    """(subscription id, hash of the secret) of a confirmation token's shape."""
    head, _, secret = token.partition(".")
    if not head.isdigit() or len(head) > 12 or not (20 <= len(secret) <= 100):
        return None
    return int(head), confirm_hash(secret)


# -- subscribers in digests ---------------------------------------------------------------


def with_subscribers(networks: Iterable[NetworkConfig], storage: Storage) -> list[NetworkConfig]:
    """The networks with their confirmed subscribers added to ``members`` (after the
    configured members, each address once)."""
    joined = storage.network_subscribers()
    out = []
    for net in networks:
        extra = joined.get(net.id, ())
        have = {m.lower() for m in net.members}
        add = tuple(a for a in extra if a.lower() not in have)
        out.append(net.model_copy(update={"members": (*net.members, *add)}) if add else net)
    return out


def matches_choice(item: StoredItem, choice: Choice) -> bool:
    """Whether an item belongs in a person's own digest for one choice (pure): topics need
    one of the areas and one of the themes (an empty list is any); a saved search needs
    every word of its query in the title, summary or programme, and its filters."""
    areas = {t.tag for t in item.tags if t.kind == "area"}
    themes = {t.tag for t in item.tags if t.kind == "theme"}
    if choice.areas and areas.isdisjoint(choice.areas):
        return False
    if choice.themes and themes.isdisjoint(choice.themes):
        return False
    if choice.kinds and item.kind not in choice.kinds:
        return False
    if choice.kind == "search":
        text = " ".join((item.title or "", item.summary or "", item.programme or "")).casefold()
        words = choice.query.casefold().split()
        return bool(words) and all(w in text for w in words)
    return choice.kind == "topics"


def personal_matcher(person: Subscriber) -> Callable[[StoredItem], bool]:
    """An item goes to the person's own digest when one of their active choices wants it."""
    choices = [s.choice for s in person.personal]
    return lambda item: any(matches_choice(item, c) for c in choices)


def personal_network(person: Subscriber, config: Config) -> NetworkConfig:
    """A person's own digest as a network-like value: every area and theme (the choices
    narrow the items), the person as its one member, on their daily or weekly schedule."""
    sub = config.subscriptions
    return NetworkConfig(
        id=person.personal_id,
        name="Din EU-bevakning",
        members=(person.address,),
        schedule=sub.daily_schedule if person.frequency == "daily" else sub.weekly_schedule,
    )


def personal_networks(
    storage: Storage, config: Config, frequency: str | None = None
) -> list[tuple[NetworkConfig, Callable[[StoredItem], bool]]]:
    """Every person's own digest with its matcher (of one frequency, or all)."""
    return [
        (personal_network(p, config), personal_matcher(p))
        for p in storage.subscribers(active_only=True)
        if p.personal and (frequency is None or p.frequency == frequency)
    ]


def subscribed_scopes(storage: Storage) -> set[tuple[str, str]]:
    """(digest id, lower-cased address) of every confirmed subscriber: their copies carry
    the preferences link instead of the unsubscribe link."""
    out = {(nid, a.lower()) for nid, addrs in storage.network_subscribers().items() for a in addrs}
    out.update(
        (p.personal_id, p.address.lower())
        for p in storage.subscribers(active_only=True)
        if p.personal
    )
    return out


def is_personal(digest_id: str) -> bool:
    return digest_id.startswith(PERSONAL_PREFIX)


# -- sign-up -----------------------------------------------------------------------------------


class SignUpRefused(ValueError):
    """The address cannot sign up: not one plain address, or not in an allowed domain
    (``reason``: ``address`` or ``domain``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


_TEXTS = {
    "sv": {
        "subject": "Bekräfta din prenumeration på EU-bevakning",
        "body": (
            "Hej!\n\nNågon, förhoppningsvis du, vill prenumerera på {what} från EU-bevakning "
            "till {address}.\n\nBekräfta här (inget skickas förrän du har bekräftat):\n{url}\n\n"
            "Länken gäller i sju dagar. Om det inte var du behöver du inte göra något.\n"
        ),
    },
    "en": {
        "subject": "Confirm your EU-bevakning subscription",
        "body": (
            "Hello,\n\nSomeone, hopefully you, wants {address} to receive {what} from "
            "EU-bevakning.\n\nConfirm here (nothing is sent before you do):\n{url}\n\n"
            "The link works for seven days. If it was not you, do nothing.\n"
        ),
    },
}


def describe(choice: Choice, config: Config, lang: str = "sv") -> str:
    """A choice in a few words (the confirmation email, the preferences page)."""
    en = lang == "en"
    if choice.kind == "network":
        name = next(
            (n.name for n in config.networks if n.id == choice.network_id), choice.network_id
        )
        return f"{'the digest of' if en else 'utskicket från'} {name}"
    if choice.kind == "search":
        return f"{'new matches for' if en else 'nya träffar på'} «{choice.query}»"
    names = TAG_NAMES[lang_of(lang)]
    tags = (names.get(t, t) for t in (*choice.areas, *choice.themes))
    parts = ", ".join(tags) or ("everything" if en else "allt")
    return f"{'news on' if en else 'nyheter om'} {parts}"


def confirmation_message(
    config: Config, address: str, url: str, what: str, lang: str, now_header: str
) -> Outgoing:
    """The confirmation email: plain text, no list headers (it is not a digest)."""
    try:
        sender = Sender.parse(config.email.sender)
    except ValueError as e:
        raise ConfigError(f"email.sender: {e}") from e
    t = _TEXTS.get(lang, _TEXTS["sv"])
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender.header()
    msg["To"] = address
    msg["Subject"] = t["subject"]
    msg["Date"] = now_header
    msg["Message-ID"] = make_msgid("confirm", domain=sender.domain)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(t["body"].format(what=what, address=address, url=url))
    raw = msg.as_bytes()
    head, _, body = raw.partition(b"\r\n\r\n")
    return Outgoing(head + b"\r\n", body)


def sign_up(
    app: Host,
    address: str,
    choice: Choice,
    *,
    lang: str = "sv",
    transport: Transport | None = None,
) -> None:
    """Store ``choice`` as pending for ``address`` and mail the confirmation link.
    ``SignUpRefused`` for an address that is not one plain address or not in an allowed
    domain; a transport error comes out as it is (the caller says "try again later")."""
    try:
        addr = validate_email(address).lower()
    except ValueError as e:
        raise SignUpRefused("address", str(e)) from e
    if not domain_allowed(addr, app.config):
        raise SignUpRefused("domain", addr.rsplit("@", 1)[1])
    secret = secrets.token_urlsafe(24)
    now = app.now()
    sub_id = app.storage.add_subscription(addr, choice, confirm_hash(secret), now)
    base = app.config.watcher.base_url.rstrip("/")
    url = f"{base}/prenumerera/bekrafta/{confirmation_token(sub_id, secret)}"
    msg = confirmation_message(
        app.config, addr, url, describe(choice, app.config, lang), lang, format_datetime(now)
    )
    own = transport is None
    t = transport or make_transport(app.config)
    try:
        t.send(msg, Sender.parse(app.config.email.sender).address, addr)
    finally:
        if own:
            t.close()
    log.info("subscription %s: confirmation mailed", sub_id)


def address_key(address: str) -> str:
    """A rate limiter's key for an address (hashed: the limiter keeps no addresses)."""
    return hashlib.sha256(address.strip().lower().encode("utf-8")).hexdigest()[:32]


def scope_ids(person: Subscriber, scope: str) -> Sequence[int] | None:
    """The choices a preferences link's one-click unsubscribe ends: those behind the
    digest it came in (None: all of them)."""
    if scope == ALL:
        return None
    if scope == person.personal_id:
        return [s.id for s in person.personal]
    return [s.id for s in person.active if s.choice.network_id == scope]
