"""What the API reference shows, read from a live app: its OpenAPI schema for routes, bodies
and responses, and each route's dependencies for the API key role it requires."""

from __future__ import annotations

import ast
import inspect
import json
import textwrap
from functools import cache
from typing import Any

from fastapi import FastAPI
from fastapi import routing as fastapi_routing
from fastapi.routing import APIRoute

from titans.serving.auth import ROLES

__all__ = ["api_context", "route_access", "sample_of"]

#: calls whose string-literal argument names the role a dependency requires
_ROLE_CALLS = frozenset({"_require", "require", "has_role", "authorize", "_authorized"})
_AUTHENTICATE = "authenticate"
_MAX_DEPTH = 8


@cache
def _facts(call: Any) -> tuple[frozenset[str], bool]:
    """(roles required, authenticates?) of one dependency callable, from its source."""
    try:
        source = textwrap.dedent(inspect.getsource(call))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):
        return frozenset(), False
    roles: set[str] = set()
    authenticates = getattr(call, "__name__", "") == _AUTHENTICATE
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name == _AUTHENTICATE:
            authenticates = True
        if name in _ROLE_CALLS:
            for arg in node.args:
                if isinstance(arg, ast.Constant) and arg.value in ROLES:
                    roles.add(str(arg.value))
    return frozenset(roles), authenticates


def _dependency_calls(dependant: Any) -> list[Any]:
    calls = []
    for dep in dependant.dependencies:
        if dep.call is not None:
            calls.append(dep.call)
        calls.extend(_dependency_calls(dep))
    return calls


def _api_routes(app: FastAPI) -> list[tuple[str, set[str], Any]]:
    """(path, methods, dependant) of every route in the OpenAPI schema, as the app serves it
    (prefixes and router dependencies applied)."""
    # FastAPI >= 0.160 keeps included routers lazily; iter_route_contexts flattens them the
    # way app.openapi() does. Older versions list flat APIRoutes in app.routes.
    iterate = getattr(fastapi_routing, "iter_route_contexts", None)
    contexts = list(iterate(app.routes)) if iterate is not None else list(app.routes)
    found = []
    for context in contexts:
        original = getattr(context, "original_route", context)
        if not isinstance(original, APIRoute) or not original.include_in_schema:
            continue
        path = getattr(context, "path_format", None) or original.path_format
        methods = {m.upper() for m in (getattr(context, "methods", None) or original.methods or ())}
        found.append((str(path), methods, getattr(context, "dependant", original.dependant)))
    return found


def route_access(dependant: Any, path: str, open_routes: list[str]) -> str:
    """Who may call a route: ``open``, ``any API key``, or ``API key with role X``, from the
    route's dependency tree (``dependant``) and the open routes of the settings."""
    if path in open_routes:
        return "open (no key)"
    roles: set[str] = set()
    authenticates = False
    for call in _dependency_calls(dependant):
        found, auth = _facts(call)
        roles |= found
        authenticates = authenticates or auth
    if roles:
        return "API key with role " + " and ".join(f"`{r}`" for r in sorted(roles))
    return "any API key" if authenticates else "open (no key checked)"


def _resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        node: Any = spec
        for part in ref[2:].split("/"):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        return node if isinstance(node, dict) else {}
    return schema


def sample_of(
    schema: dict[str, Any], spec: dict[str, Any], depth: int = 0, name: str | None = None
) -> Any:
    """A deterministic example value for a JSON schema: its own example or default when it
    has one, else a value of its type that respects its bounds.

    >>> sample_of({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1},
    ...     "d": {"type": "string", "format": "date"}}}, {})
    {'n': 1, 'd': '2026-01-31'}
    >>> sample_of({"type": "object", "properties": {"model": {"type": "string"}}}, {})
    {'model': '<model>'}
    """
    schema = _resolve(schema, spec)
    if depth > _MAX_DEPTH:
        return None
    if "example" in schema:
        return schema["example"]
    if isinstance(schema.get("examples"), list) and schema["examples"]:
        return schema["examples"][0]
    if schema.get("default") is not None:
        return schema["default"]
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(key) or [] if _resolve(o, spec).get("type") != "null"]
        if options:
            return sample_of(options[0], spec, depth + 1, name)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        if properties:
            return {k: sample_of(v, spec, depth + 1, k) for k, v in properties.items()}
        extra = schema.get("additionalProperties")
        return {"key": sample_of(extra, spec, depth + 1)} if isinstance(extra, dict) else {}
    if kind == "array":
        item = sample_of(schema.get("items") or {}, spec, depth + 1, name)
        return [item] * max(int(schema.get("minItems") or 1), 1)
    if kind == "string":
        return _string(schema, name)
    if kind in ("integer", "number"):
        return _number(schema, kind)
    if kind == "boolean":
        return True
    return None


def _string(schema: dict[str, Any], name: str | None) -> str:
    formats = {
        "date": "2026-01-31",
        "date-time": "2026-01-31T12:00:00Z",
        "uuid": "00000000-0000-4000-8000-000000000000",
        "uri": "https://example.com/",
        "email": "someone@example.com",
    }
    text = formats.get(str(schema.get("format")), f"<{name}>" if name else "string")
    minimum = int(schema.get("minLength") or 0)
    return text + "x" * max(minimum - len(text), 0)


def _number(schema: dict[str, Any], kind: str) -> int | float:
    """Zero when the bounds allow it, else the nearest allowed value."""
    step = 1 if kind == "integer" else 0.5
    value: float = 0
    if schema.get("minimum") is not None and value < float(schema["minimum"]):
        value = float(schema["minimum"])
    if schema.get("exclusiveMinimum") is not None and value <= float(schema["exclusiveMinimum"]):
        value = float(schema["exclusiveMinimum"]) + step
    if schema.get("maximum") is not None and value > float(schema["maximum"]):
        value = float(schema["maximum"])
    if schema.get("exclusiveMaximum") is not None and value >= float(schema["exclusiveMaximum"]):
        value = float(schema["exclusiveMaximum"]) - step
    return int(value) if kind == "integer" else float(value)


def _example(content: dict[str, Any], spec: dict[str, Any]) -> tuple[str, str] | None:
    """(media type, example text) of an OpenAPI content mapping: JSON bodies get one built
    from their schema; other media only the example the schema gives (a made-up page of
    HTML would document nothing)."""
    for media, body in sorted(content.items()):
        schema = _resolve(body.get("schema") or {}, spec)
        if media == "application/json":
            value = body["example"] if "example" in body else sample_of(schema, spec)
            return media, json.dumps(value, indent=2, ensure_ascii=False)
        given = body.get("example", schema.get("example"))
        if given is not None:
            return media, str(given)
    return None


def api_context(app: FastAPI, open_routes: list[str]) -> dict[str, Any]:
    """Every documented route of ``app``: method, path, access, summary, bodies, responses."""
    spec = app.openapi()
    access = {
        (method, path): route_access(dependant, path, open_routes)
        for path, methods, dependant in _api_routes(app)
        for method in methods
    }
    operations = []
    for path, item in sorted(spec.get("paths", {}).items()):
        for method, operation in sorted(item.items()):
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            parameters = [
                {
                    "name": p.get("name"),
                    "in": p.get("in"),
                    "required": bool(p.get("required")),
                    "type": _type_name(p.get("schema") or {}, spec),
                    "description": " ".join(str(p.get("description") or "").split()),
                }
                for p in operation.get("parameters") or []
            ]
            body = operation.get("requestBody") or {}
            request = _example(body.get("content") or {}, spec) if body else None
            fields = _fields(body.get("content") or {}, spec) if body else []
            responses = []
            for code, response in sorted(operation["responses"].items()):
                example = None
                if str(code).startswith("2"):
                    example = _example(response.get("content") or {}, spec)
                responses.append(
                    {
                        "code": str(code),
                        "description": " ".join(str(response.get("description", "")).split()),
                        "example": example,
                    }
                )
            operations.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "tags": list(operation.get("tags") or []),
                    "summary": operation.get("summary") or "",
                    "description": (operation.get("description") or "").strip(),
                    "access": access.get((method.upper(), path), "not found among the routes"),
                    "parameters": parameters,
                    "request": request,
                    "request_required": bool(body.get("required")),
                    "request_fields": fields,
                    "responses": responses,
                }
            )
    info = spec.get("info") or {}
    return {
        "title": info.get("title", ""),
        "version": info.get("version", ""),
        "description": info.get("description", ""),
        "openapi": spec.get("openapi", ""),
        "operations": operations,
        "open_routes": list(open_routes),
    }


def _fields(content: dict[str, Any], spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The top-level fields of a JSON request body: name, type, required, description."""
    body = content.get("application/json") or {}
    schema = _resolve(body.get("schema") or {}, spec)
    required = set(schema.get("required") or [])
    return [
        {
            "name": name,
            "type": _type_name(field, spec),
            "required": name in required,
            "description": " ".join(str(_resolve(field, spec).get("description") or "").split()),
        }
        for name, field in (schema.get("properties") or {}).items()
    ]


def _type_name(schema: dict[str, Any], spec: dict[str, Any]) -> str:
    schema = _resolve(schema, spec)
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return " or ".join(_type_name(o, spec) for o in schema[key])
    kind = schema.get("type")
    if kind == "array":
        return f"array of {_type_name(schema.get('items') or {}, spec)}"
    if isinstance(schema.get("enum"), list):
        return " / ".join(str(v) for v in schema["enum"])
    return str(kind or schema.get("title") or "any")
