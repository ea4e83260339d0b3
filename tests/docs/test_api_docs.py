"""The API reference: every route of the live schema, the role it needs (checked against what
the app does with keys lacking it), and request and response examples."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from titans.config import Settings
from titans.docs.api_docs import sample_of
from titans.docs.generator import DocumentationGenerator
from titans.serving.app import create_app
from titans.serving.auth import ROLES, generate_api_key

ROW = re.compile(r"^\| (GET|POST|PUT|PATCH|DELETE) \| `([^`]+)` \| ([^|]+) \|", re.M)


@pytest.fixture(scope="module")
def keys() -> dict[str, tuple[str, object]]:
    """One key per role, plus one holding every role but that one (``all-but-<role>``)."""
    made: dict[str, tuple[str, object]] = {}
    for role in ROLES:
        made[role] = generate_api_key(f"only-{role}", [role])
        others = [r for r in ROLES if r != role]
        made[f"all-but-{role}"] = generate_api_key(f"all-but-{role}", others)
    return made


def _documented(text: str) -> dict[tuple[str, str], str]:
    return {(m[0], m[1]): m[2].strip() for m in ROW.findall(text)}


def test_every_route_of_the_schema_is_documented_with_its_access(settings: Settings) -> None:
    text = DocumentationGenerator(settings).generate_api_docs()
    # documenting the API reached no registry and created none
    assert not (settings.home_dir / "mlflow.db").exists()
    documented = _documented(text)
    schema = create_app(settings, poll=False).openapi()

    expected = {
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert set(documented) == expected
    assert documented[("POST", "/predict/category")] == "API key with role `predict`"
    assert documented[("POST", "/admin/promote")] == "API key with role `admin`"
    assert documented[("GET", "/approvals/pending")] == "API key with role `approver`"
    assert documented[("GET", "/health")] == "open (no key)"
    assert documented[("GET", "/models")] == "any API key"
    for method, path in expected:
        assert f"\n## {method} {path}\n" in text


def test_documented_roles_are_what_the_app_enforces(
    titans_home: Path, keys: dict[str, tuple[str, object]]
) -> None:
    settings = Settings(api_keys=[api_key for _, api_key in keys.values()])
    text = DocumentationGenerator(settings).generate_api_docs()
    app = create_app(settings, poll=False)
    body = {"name": "x"}
    checked = 0
    with TestClient(app) as client:
        for (method, path), access in _documented(text).items():
            url = re.sub(r"\{[^}]+\}", "no-such-thing", path)
            role = re.fullmatch(r"API key with role `(\w+)`", access)

            def call(raw: str | None, method: str = method, url: str = url) -> int:
                headers = {"Authorization": f"Bearer {raw}"} if raw else {}
                if method == "GET":
                    return client.get(url, headers=headers).status_code
                return client.request(method, url, json=body, headers=headers).status_code

            if access.startswith("open"):
                assert call(None) not in (401, 403), path
            elif role is not None:
                name = role[1]
                assert call(None) == 401, path
                assert call(keys[f"all-but-{name}"][0]) == 403, (path, access)
                assert call(keys[name][0]) not in (401, 403), (path, access)
            else:
                assert access == "any API key", path
                assert call(None) == 401, path
                assert call(keys["predict"][0]) not in (401, 403), path
            checked += 1
    assert checked >= 15


def test_request_and_response_examples_come_from_the_schema(settings: Settings) -> None:
    text = DocumentationGenerator(settings).generate_api_docs()
    section = text.split("\n## POST /predict/category\n", 1)[1].split("\n## ", 1)[0]

    assert "Request body (application/json, required), example:" in section
    assert '"description": ""' in section and '"date": "2026-01-31"' in section
    assert "| `amount` | number | yes | Signed amount: expenses negative, income positive. |" in (
        section
    )
    assert "Response 200 (application/json), example:" in section
    assert "| 422 |" in section


def test_sample_of_respects_refs_bounds_and_enums() -> None:
    spec = {
        "components": {
            "schemas": {
                "Arm": {"type": "string", "enum": ["A", "B"]},
                "Row": {
                    "type": "object",
                    "properties": {
                        "arm": {"$ref": "#/components/schemas/Arm"},
                        "n": {"type": "integer", "exclusiveMinimum": 0},
                        "x": {"type": "number", "maximum": -1},
                        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
                        "note": {"anyOf": [{"type": "null"}, {"type": "string"}]},
                    },
                },
            }
        }
    }
    assert sample_of({"$ref": "#/components/schemas/Row"}, spec) == {
        "arm": "A",
        "n": 1,
        "x": -1.0,
        "tags": ["<tags>", "<tags>"],
        "note": "<note>",
    }
