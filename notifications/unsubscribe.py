"""Signed unsubscribe links: ``{base_url}/unsubscribe/{token}``.

The token names the network and the address and is signed (HMAC, itsdangerous) with
``WATCHER_SECRET_KEY`` (the variable named by ``web.secret_key_env``) or, on the embedded
default, a random key made once and kept in the database's ``meta`` table; never in
config.toml or the repository. A link has no expiry: the footer of a year-old digest must
still work. A GET only shows a confirmation page; a POST (the page's button, or a mail
client's RFC 8058 one-click POST) records the opt-out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer

from notifications.ports import Host
from watcher.storage.deliveries import DeliveryStore

SALT = "eu-bevakning/unsubscribe/v1"
META_KEY = "unsubscribe_secret"


def secret_key(app: Host) -> str:
    """The signing key: from the environment, else the database's own random key."""
    env = os.environ.get(app.config.web.secret_key_env)
    if env:
        return env
    return DeliveryStore(app.storage).secret(META_KEY)


def sign_pair(secret: str, salt: str, first: str, second: str) -> str:
    """A signed token of two strings (no expiry)."""
    return str(URLSafeSerializer(secret, salt=salt).dumps([first, second]))


def read_pair(secret: str, salt: str, token: str) -> tuple[str, str] | None:
    """The two strings of a token ``sign_pair`` made; None for anything forged or garbled."""
    try:
        data = URLSafeSerializer(secret, salt=salt).loads(token)
    except (BadSignature, ValueError, TypeError):
        return None
    if not isinstance(data, list) or len(data) != 2 or not all(isinstance(x, str) for x in data):
        return None
    return data[0], data[1]


@dataclass(frozen=True)
class Unsubscriber:
    """Makes and reads unsubscribe tokens for one secret and base URL."""

    secret: str
    base_url: str

    @classmethod
    def for_app(cls, app: Host) -> Unsubscriber:
        """The unsubscriber of a running service (the ``App``): its key and base URL."""
        return cls(secret_key(app), app.config.watcher.base_url.rstrip("/"))

    def token(self, network_id: str, address: str) -> str:
        return sign_pair(self.secret, SALT, network_id, address.strip().lower())

    def url(self, network_id: str, address: str) -> str:
        return f"{self.base_url}/unsubscribe/{self.token(network_id, address)}"

    def read(self, token: str) -> tuple[str, str] | None:
        """(network id, address) of a valid token; None for anything forged or garbled."""
        return read_pair(self.secret, SALT, token)
