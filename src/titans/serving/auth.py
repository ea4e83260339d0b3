"""API keys: parse ``Authorization: Bearer <key>``, match it against stored hashes, check roles.

Keys are held only as SHA-256 hex digests (``Settings.api_keys``). A presented key is hashed
and compared against *every* stored digest with :func:`hmac.compare_digest`, without stopping
at the first match, so neither the position of a match nor a common prefix shows in timing.

Roles are independent: ``admin`` does not imply ``predict`` or ``approver`` (give a key every
role it needs), so a leaked prediction key can never promote a model, and an admin key used by
automation cannot approve its own promotion.

>>> raw, api_key = generate_api_key("ci", ["predict"])
>>> ring = KeyRing([api_key])
>>> ring.authenticate(f"Bearer {raw}").name
'ci'
>>> ring.authenticate("Bearer not-a-key") is None
True
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from titans.config import ApiKey
from titans.errors import ConfigError, PermissionDenied, TitansError

#: every role a key can hold (ApiKey.roles accepts exactly these)
ROLES: tuple[str, ...] = ("predict", "admin", "approver", "requester", "alerts")

#: prefix of generated keys: lets secret scanners and people recognise a leaked key
KEY_PREFIX = "titans_"


class Unauthenticated(TitansError):
    """No API key, a malformed Authorization header, or a key that matches no stored hash."""

    http_status = 401
    exit_code = 2


class Forbidden(PermissionDenied):
    """A valid API key without the role the route needs."""

    http_status = 403


@dataclass(frozen=True)
class Identity:
    """Who a request authenticated as: the key's name and its roles."""

    name: str
    roles: frozenset[str]

    def has_role(self, role: str) -> bool:
        """True when the identity holds ``role`` (roles do not imply each other)."""
        return role in self.roles


def hash_key(raw: str) -> str:
    """SHA-256 hex digest of a raw API key: the only form in which keys are stored.

    >>> hash_key("secret")[:16]
    '2bb80d537b1da3e3'
    """
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def generate_api_key(name: str, roles: Iterable[str]) -> tuple[str, ApiKey]:
    """A new random key: the raw key (show it once, never store it) and its storable ApiKey."""
    roles = list(roles)
    unknown = sorted(set(roles) - set(ROLES))
    if unknown or not roles:
        raise ConfigError(
            f"roles {unknown or roles} are not valid for API key {name!r}; "
            f"choose one or more of {', '.join(ROLES)}"
        )
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    try:
        api_key = ApiKey(name=name, key_sha256=hash_key(raw), roles=roles)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(f"API key {name!r} is not valid: {exc.errors()[0]['msg']}") from exc
    return raw, api_key


def parse_bearer(authorization_header: str | None) -> str | None:
    """The token of ``Bearer <token>`` (scheme case-insensitive), or None if absent or malformed.

    >>> parse_bearer("bearer abc"), parse_bearer("Basic abc"), parse_bearer("Bearer a b")
    ('abc', None, None)
    """
    if not authorization_header:
        return None
    parts = authorization_header.strip().split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return None
    return parts[1]


class KeyRing:
    """The configured API keys, matched in constant time."""

    def __init__(self, api_keys: Sequence[ApiKey]) -> None:
        seen: dict[str, str] = {}
        for key in api_keys:
            if key.key_sha256 in seen:
                raise ConfigError(
                    f"API keys {seen[key.key_sha256]!r} and {key.name!r} have the same hash; "
                    "give each client its own key (titans keys create)"
                )
            seen[key.key_sha256] = key.name
        self._keys: tuple[ApiKey, ...] = tuple(api_keys)
        self._identities = tuple(Identity(k.name, frozenset(k.roles)) for k in self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def authenticate(self, authorization_header: str | None) -> Identity | None:
        """The identity whose key the header carries, or None (missing, malformed, unknown)."""
        token = parse_bearer(authorization_header)
        if token is None:
            return None
        presented = hash_key(token)
        found: Identity | None = None
        # every stored hash is compared, whatever matched before: constant work per request
        for key, identity in zip(self._keys, self._identities, strict=True):
            if hmac.compare_digest(presented, key.key_sha256) and found is None:
                found = identity
        return found

    def require(self, authorization_header: str | None, role: str) -> Identity:
        """Authenticate and authorize in one call: the identity, or Unauthenticated/Forbidden."""
        return _authorized(self.authenticate(authorization_header), role)


def authorize(identity: Identity | None, role: str) -> None:
    """Raise Unauthenticated (401) without an identity, Forbidden (403) without ``role``."""
    _authorized(identity, role)


def _authorized(identity: Identity | None, role: str) -> Identity:
    if role not in ROLES:
        raise TitansError(f"role {role!r} is not a known role; use one of {', '.join(ROLES)}")
    if identity is None:
        raise Unauthenticated(
            "missing or invalid API key; send the header 'Authorization: Bearer <key>'"
        )
    if not identity.has_role(role):
        raise Forbidden(f"API key {identity.name!r} lacks the role {role!r}; use a key that has it")
    return identity
