"""API keys: Bearer parsing, hash-only storage, constant-time matching, roles → 401/403."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from titans.config import ApiKey, Settings
from titans.errors import ConfigError, PermissionDenied, TitansError
from titans.serving import auth
from titans.serving.auth import (
    Forbidden,
    Identity,
    KeyRing,
    Unauthenticated,
    authorize,
    generate_api_key,
    hash_key,
)


@pytest.fixture
def keys() -> dict[str, tuple[str, ApiKey]]:
    return {
        "client": generate_api_key("client", ["predict"]),
        "ops": generate_api_key("ops", ["admin"]),
        "lead": generate_api_key("lead", ["approver", "predict"]),
    }


@pytest.fixture
def ring(keys: dict[str, tuple[str, ApiKey]]) -> KeyRing:
    return KeyRing([api_key for _, api_key in keys.values()])


def test_hash_key_is_sha256_hex() -> None:
    assert hash_key("k") == hashlib.sha256(b"k").hexdigest()


def test_valid_key_authenticates_with_its_name_and_roles(
    ring: KeyRing, keys: dict[str, tuple[str, ApiKey]]
) -> None:
    raw, _ = keys["lead"]
    identity = ring.authenticate(f"Bearer {raw}")
    assert identity == Identity(name="lead", roles=frozenset({"approver", "predict"}))
    # scheme is case-insensitive and surrounding whitespace is tolerated
    assert ring.authenticate(f"  bearer {raw} ") == identity


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Token abc",
        "Bearer two tokens",
        "Bearer titans_wrong-key",
    ],
)
def test_missing_malformed_or_unknown_key_is_none(ring: KeyRing, header: str | None) -> None:
    assert ring.authenticate(header) is None


def test_raw_key_without_scheme_is_refused(
    ring: KeyRing, keys: dict[str, tuple[str, ApiKey]]
) -> None:
    raw, _ = keys["client"]
    assert ring.authenticate(raw) is None


def test_presenting_the_stored_hash_does_not_authenticate(
    ring: KeyRing, keys: dict[str, tuple[str, ApiKey]]
) -> None:
    _, api_key = keys["client"]
    assert ring.authenticate(f"Bearer {api_key.key_sha256}") is None


def test_require_maps_to_401_and_403(ring: KeyRing, keys: dict[str, tuple[str, ApiKey]]) -> None:
    with pytest.raises(Unauthenticated) as missing:
        ring.require(None, "predict")
    assert missing.value.http_status == 401
    with pytest.raises(Unauthenticated):
        ring.require("Bearer nope", "predict")

    raw_client, _ = keys["client"]
    with pytest.raises(Forbidden) as wrong_role:
        ring.require(f"Bearer {raw_client}", "admin")
    assert wrong_role.value.http_status == 403
    assert "client" in str(wrong_role.value) and "admin" in str(wrong_role.value)
    assert raw_client not in str(wrong_role.value)
    assert ring.require(f"Bearer {raw_client}", "predict").name == "client"


def test_admin_implies_no_other_role(ring: KeyRing, keys: dict[str, tuple[str, ApiKey]]) -> None:
    raw_ops, _ = keys["ops"]
    identity = ring.authenticate(f"Bearer {raw_ops}")
    authorize(identity, "admin")
    for role in ("predict", "approver"):
        with pytest.raises(Forbidden):
            authorize(identity, role)


def test_errors_belong_to_the_titans_hierarchy() -> None:
    assert issubclass(Unauthenticated, TitansError)
    assert issubclass(Forbidden, PermissionDenied)


def test_unknown_role_in_authorize_is_an_error() -> None:
    with pytest.raises(TitansError, match="not a known role"):
        authorize(Identity("x", frozenset({"predict"})), "superuser")


def test_generated_keys_are_random_and_stored_only_as_hashes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw1, key1 = generate_api_key("a", ["predict"])
    raw2, _ = generate_api_key("a", ["predict"])
    assert raw1 != raw2 and len(raw1) >= 40
    assert key1.key_sha256 == hash_key(raw1)
    # the storable form (what goes into settings / env) never contains the raw key
    dumped = key1.model_dump_json()
    assert raw1 not in dumped
    assert raw1[len(auth.KEY_PREFIX) :] not in dumped
    # configured through the environment as a hash, it authenticates the raw key
    monkeypatch.setenv("TITANS_API_KEYS", f"[{dumped}]")
    settings = Settings(home=tmp_path)
    assert [k.name for k in settings.api_keys] == ["a"]
    assert KeyRing(settings.api_keys).authenticate(f"Bearer {raw1}") is not None
    assert raw1 not in settings.model_dump_json()


def test_generate_refuses_unknown_or_no_roles() -> None:
    with pytest.raises(ConfigError, match="root"):
        generate_api_key("x", ["root"])
    with pytest.raises(ConfigError):
        generate_api_key("x", [])


def test_the_same_key_configured_twice_is_refused() -> None:
    _, key = generate_api_key("a", ["predict"])
    clone = key.model_copy(update={"name": "b"})
    with pytest.raises(ConfigError, match="same hash"):
        KeyRing([key, clone])


def test_every_stored_hash_is_compared_with_compare_digest_and_no_early_exit(
    ring: KeyRing, keys: dict[str, tuple[str, ApiKey]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Matching uses hmac.compare_digest on hashes, once per stored key, whatever matches."""
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def recording(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", recording)
    stored = [api_key.key_sha256 for _, api_key in keys.values()]

    raw_first, _ = keys["client"]  # the first key in the ring: an early exit would stop here
    assert ring.authenticate(f"Bearer {raw_first}") is not None
    assert [b for _, b in calls] == stored
    assert {a for a, _ in calls} == {hash_key(raw_first)}  # the hash, never the raw key

    calls.clear()
    assert ring.authenticate("Bearer unknown") is None
    assert [b for _, b in calls] == stored
