"""Named compliance control sets; ``titans-baseline`` checks the real app, store and deploy files.

Each control returns pass / fail / not-applicable (or ``error`` when it could not be judged,
which never counts as a pass) with evidence: file and line, or what was run and what it said.
"""

from __future__ import annotations

import logging
import re
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from titans.config import ApiKey, Settings
from titans.errors import InputError
from titans.security.findings import ERROR, FAIL, NOT_APPLICABLE, PASS, find_tool, run_tool

log = logging.getLogger(__name__)

Evidence = dict[str, Any]


@dataclass
class ControlResult:
    """The verdict on one control with the evidence an auditor can re-check."""

    id: str
    title: str
    severity: str
    status: str
    evidence: list[Evidence] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "severity": self.severity,
            "status": self.status,
            "evidence": self.evidence,
        }


@dataclass
class ComplianceContext:
    """What the controls inspect: the repository root and the configured settings.

    ``app_factory`` and ``key_factory`` default to the real ``create_app`` and
    ``generate_api_key``; ``secrets_scan`` reuses a detect-secrets result already computed.
    """

    root: Path
    settings: Settings
    app_factory: Callable[[Settings], Any] | None = None
    key_factory: Callable[[str, list[str]], tuple[str, ApiKey]] | None = None
    secrets_scan: dict[str, Any] | None = None
    secrets_allowlist: list[Path] | None = None


@dataclass(frozen=True)
class Control:
    id: str
    title: str
    severity: str
    check: Callable[[ComplianceContext], tuple[str, list[Evidence]]]


def _ev(path: Path | str | None = None, line: int | None = None, **detail: Any) -> Evidence:
    return {"file": str(path) if path is not None else None, "line": line, **detail}


def _rel(ctx: ComplianceContext, path: Path) -> str:
    try:
        return str(path.relative_to(ctx.root))
    except ValueError:
        return str(path)


# ------------------------------------------------------------------ admin routes need auth

#: path prefixes of the routes that change or approve what is served
PROTECTED_PREFIXES = ("/admin", "/approvals")
ROLE_CHECKS = frozenset({"require_admin", "require_approver"})


def _dependency_names(dependant: Any) -> set[str]:
    names: set[str] = set()
    for sub in dependant.dependencies:
        call = getattr(sub, "call", None)
        if call is not None:
            names.add(getattr(call, "__name__", repr(call)))
        names |= _dependency_names(sub)
    return names


def api_routes(
    routes: list[Any], prefix: str = "", deps: frozenset[str] = frozenset()
) -> Iterator[tuple[str, set[str], set[str]]]:
    """(full path, methods, role-check names) of every APIRoute, through included routers.

    FastAPI >= 0.16x keeps included routers as ``_IncludedRouter`` entries (prefix and
    include-level dependencies in ``include_context``) instead of copying their routes.
    """
    from fastapi.routing import APIRoute

    for route in routes:
        if isinstance(route, APIRoute):
            names = _dependency_names(route.dependant) | set(deps)
            yield prefix + route.path, set(route.methods or {"GET"}), names & ROLE_CHECKS
            continue
        context = getattr(route, "include_context", None)
        inner = getattr(route, "original_router", None)
        if context is not None and inner is not None:
            extra = {getattr(d.dependency, "__name__", "") for d in context.dependencies}
            yield from api_routes(
                list(inner.routes), prefix + context.prefix, deps | frozenset(extra)
            )


@contextmanager
def _quiet_app_logs() -> Iterator[None]:
    """The probe apps run without models or keys on purpose; their startup warnings about
    that would read as findings in a scan's output."""
    serving = logging.getLogger("titans.serving")
    level = serving.level
    serving.setLevel(logging.ERROR)
    try:
        yield
    finally:
        serving.setLevel(level)


def _isolated(settings: Settings, home: Path) -> Settings:
    """The configured auth settings (keys, open routes) with stores in a throwaway home."""
    return settings.model_copy(
        update={"home": home, "database_url_override": None, "tracking_uri_override": None}
    )


def check_admin_auth(ctx: ComplianceContext) -> tuple[str, list[Evidence]]:
    """Every /admin and /approvals route depends on a role check and answers 401 without a key."""
    from fastapi.testclient import TestClient

    factory = ctx.app_factory
    if factory is None:
        from titans.serving.app import create_app

        def factory(s: Settings) -> Any:
            return create_app(s, poll=False)

    evidence: list[Evidence] = []
    ok = True
    with tempfile.TemporaryDirectory() as tmp, _quiet_app_logs():
        app = factory(_isolated(ctx.settings, Path(tmp)))
        routes = [r for r in api_routes(list(app.routes)) if r[0].startswith(PROTECTED_PREFIXES)]
        if not routes:
            return FAIL, [_ev(detail="the app has no /admin or /approvals routes to check")]
        with TestClient(app, raise_server_exceptions=False) as client:
            for route_path, methods, deps in routes:
                path = re.sub(r"\{[^}]+\}", "1", route_path)
                for method in sorted(methods - {"HEAD", "OPTIONS"}):
                    status = client.request(method, path).status_code
                    good = status == 401 and bool(deps)
                    ok &= good
                    evidence.append(
                        _ev(
                            detail=f"{method} {route_path} without a key -> HTTP {status}; "
                            f"role check: {', '.join(sorted(deps)) or 'NONE'}",
                            passed=good,
                        )
                    )
    return (PASS if ok else FAIL), evidence


# ------------------------------------------------------------------ API keys hashed


def check_keys_hashed(ctx: ComplianceContext) -> tuple[str, list[Evidence]]:
    """A key made by the key factory authenticates, yet its raw form is in no stored byte."""
    from fastapi.testclient import TestClient

    from titans.serving.app import create_app
    from titans.serving.auth import generate_api_key
    from titans.store import Store

    key_factory = ctx.key_factory or generate_api_key
    fields = sorted(ApiKey.model_fields)
    evidence: list[Evidence] = [
        _ev(
            "src/titans/config.py",
            detail=f"ApiKey fields {fields}; key material only in "
            "key_sha256 (64 hex digits enforced)",
        ),
    ]
    with tempfile.TemporaryDirectory() as tmp, _quiet_app_logs():
        home = Path(tmp)
        raw, api_key = key_factory("compliance-probe", ["admin", "approver"])
        settings = _isolated(ctx.settings, home).model_copy(
            update={"api_keys": [api_key], "open_routes": ["/health"]}
        )
        store = Store(settings)
        store.upgrade()
        app = create_app(settings, poll=False)
        with TestClient(app, raise_server_exceptions=False) as client:
            status = client.get(
                "/approvals/pending", headers={"Authorization": f"Bearer {raw}"}
            ).status_code
        store.dispose()
        stored = [settings.model_dump_json().encode()]
        stored += [p.read_bytes() for p in home.rglob("*") if p.is_file()]
        leaked = any(raw.encode() in blob for blob in stored)
    evidence.append(
        _ev(
            detail=f"a new key authenticates against the app: GET /approvals/pending "
            f"-> HTTP {status}"
        )
    )
    evidence.append(
        _ev(
            detail=f"raw key found in the settings entry or ops store files: "
            f"{'YES' if leaked else 'no'}"
        )
    )
    if leaked:
        return FAIL, evidence
    if status in {401, 403}:
        return FAIL, [*evidence, _ev(detail="the stored form of the key does not authenticate")]
    return PASS, evidence


# ------------------------------------------------------------------ no secrets


def check_no_secrets(ctx: ComplianceContext) -> tuple[str, list[Evidence]]:
    """detect-secrets finds nothing outside the allowlist."""
    scan = ctx.secrets_scan
    if scan is None:
        from titans.security.code import scan_secrets

        scan = scan_secrets(ctx.root, ctx.secrets_allowlist)
    if scan["status"] not in {PASS, FAIL}:
        return ERROR, [_ev(detail=f"detect-secrets did not run: {scan.get('detail', scan)}")]
    evidence = [
        _ev(f["path"], f["line"], detail=f"possible secret: {f['rule_id']}")
        for f in scan["findings"]
    ]
    evidence.append(
        _ev(
            detail=f"detect-secrets scanned {scan.get('files_scanned')} files; "
            f"{len(scan.get('allowlisted', []))} allowlisted with reasons"
        )
    )
    return (FAIL if scan["findings"] else PASS), evidence


# ------------------------------------------------------------------ audit chain


def check_audit_chain(ctx: ComplianceContext) -> tuple[str, list[Evidence]]:
    """The configured ops store has an audit table and its hash chain verifies."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    from titans.governance.audit import AuditLogger
    from titans.store import Store
    from titans.store.db import redact

    url = ctx.settings.database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return FAIL, [
            _ev(
                detail=f"no ops store at {url}: there is no audit trail to verify; "
                "run `titans db upgrade`"
            )
        ]
    store = Store(ctx.settings, auto_migrate=False)  # judge the store as it is
    try:
        try:
            tables = set(inspect(store.engine).get_table_names())
        except SQLAlchemyError as exc:
            return FAIL, [_ev(detail=f"ops store {redact(url)} unreachable: {exc}")]
        if not {"audit_entries", "audit_heads"} <= tables:
            return FAIL, [
                _ev(detail=f"ops store {redact(url)} has no audit table; run `titans db upgrade`")
            ]
        result = AuditLogger(store).verify()
    finally:
        store.dispose()
    detail = (
        f"titans governance audit verify on {redact(url)}: ok={result.ok}, "
        f"{result.entries_checked} entries, head {result.head_hash}"
    )
    if not result.ok:
        detail += f"; broken at entry {result.first_broken_seq}: {result.reason}"
    return (PASS if result.ok else FAIL), [_ev(detail=detail)]


# ------------------------------------------------------------------ non-root containers

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod", "ReplicaSet"}


def _dockerfile_user(path: Path) -> tuple[str | None, int | None]:
    """The last USER of the final stage, and its line (None when the stage has none)."""
    user: tuple[str | None, int | None] = (None, None)
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        words = line.strip().split()
        if not words:
            continue
        if words[0].upper() == "FROM":
            user = (None, None)
        elif words[0].upper() == "USER" and len(words) > 1:
            user = (words[1], number)
    return user


def _pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec = doc.get("spec") or {}
    if doc.get("kind") == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    if doc.get("kind") != "Pod":
        spec = (spec.get("template") or {}).get("spec") or {}
    return spec


def _non_root_problems(doc: dict[str, Any]) -> list[str]:
    spec = _pod_spec(doc)
    pod_level = (spec.get("securityContext") or {}).get("runAsNonRoot") is True
    problems = []
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        ctx = c.get("securityContext") or {}
        if ctx.get("runAsUser") == 0 or ctx.get("runAsNonRoot") is False:
            problems.append(f"container {c.get('name')} runs as root")
        elif not (pod_level or ctx.get("runAsNonRoot") is True):
            problems.append(f"container {c.get('name')} lacks runAsNonRoot: true")
    return problems


def _yaml_docs(text: str) -> Iterator[dict[str, Any]]:
    for doc in yaml.safe_load_all(text):
        if isinstance(doc, dict):
            yield doc


def _helm_render(ctx: ComplianceContext, chart: Path) -> tuple[str | None, Evidence]:
    helm = find_tool("helm", ctx.root / ".tools" / "bin" / "helm")
    if helm is None:
        return None, _ev(_rel(ctx, chart), detail="helm is not installed: chart not rendered")
    run = run_tool([helm, "template", "titans", str(chart)], timeout=120)
    if run.returncode != 0:
        return None, _ev(_rel(ctx, chart), detail=f"helm template failed: {run.stderr[-300:]}")
    return run.stdout, _ev(
        _rel(ctx, chart), detail="rendered with `helm template` (default values)"
    )


def _manifests(ctx: ComplianceContext) -> tuple[list[tuple[str, dict[str, Any]]], list[Evidence]]:
    """(source, document) for deploy/k8s/*.yaml and the rendered Helm chart; plus errors."""
    docs: list[tuple[str, dict[str, Any]]] = []
    errors: list[Evidence] = []
    k8s = ctx.root / "deploy" / "k8s"
    for path in sorted([*k8s.glob("*.yaml"), *k8s.glob("*.yml")]):
        try:
            docs += [(_rel(ctx, path), d) for d in _yaml_docs(path.read_text())]
        except yaml.YAMLError as exc:
            errors.append(_ev(_rel(ctx, path), detail=f"not valid YAML: {exc}"))
    chart = ctx.root / "deploy" / "helm" / "titans"
    if (chart / "Chart.yaml").is_file():
        rendered, note = _helm_render(ctx, chart)
        if rendered is None:
            errors.append(note)
        else:
            for doc in _yaml_docs(rendered):
                docs.append(
                    (f"helm:{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}", doc)
                )
    return docs, errors


def check_non_root(ctx: ComplianceContext) -> tuple[str, list[Evidence]]:
    """Dockerfiles end with a non-root USER; every k8s/Helm workload has runAsNonRoot."""
    from titans.security.containers import dockerfiles

    evidence: list[Evidence] = []
    ok = True
    files = dockerfiles(ctx.root / "deploy" / "docker")
    for path in files:
        user, line = _dockerfile_user(path)
        good = user is not None and user.split(":")[0] not in {"root", "0"}
        ok &= good
        evidence.append(
            _ev(_rel(ctx, path), line, detail=f"final stage USER {user or 'MISSING'}", passed=good)
        )
    docs, errors = _manifests(ctx)
    workloads = [(src, d) for src, d in docs if d.get("kind") in WORKLOADS]
    for src, doc in workloads:
        problems = _non_root_problems(doc)
        ok &= not problems
        name = (doc.get("metadata") or {}).get("name")
        evidence.append(
            _ev(
                src,
                detail=f"{doc.get('kind')} {name}: {'; '.join(problems) or 'runAsNonRoot: true'}",
                passed=not problems,
            )
        )
    if not files and not workloads and not errors:
        return NOT_APPLICABLE, [_ev(detail="no Dockerfiles and no Kubernetes workloads")]
    if errors:
        return (FAIL if not ok else ERROR), evidence + errors
    return (PASS if ok else FAIL), evidence


# ------------------------------------------------------------------ terraform storage


def _tf_line(path: Path, rtype: str, name: str) -> int | None:
    pattern = re.compile(rf'^\s*resource\s+"{re.escape(rtype)}"\s+"{re.escape(name)}"')
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if pattern.match(line):
            return number
    return None


def check_terraform_storage(ctx: ComplianceContext) -> tuple[str, list[Evidence]]:
    """RDS: storage_encrypted and not publicly_accessible; S3: SSE and a full public block."""
    tf_dir = ctx.root / "deploy" / "terraform"
    files = sorted(tf_dir.glob("*.tf"))
    if not files:
        return NOT_APPLICABLE, [_ev(_rel(ctx, tf_dir), detail="no Terraform files")]
    try:
        import hcl2
    except ImportError:
        return ERROR, [_ev(detail="python-hcl2 is not installed (dev extra)")]
    options = hcl2.SerializationOptions(
        with_comments=False, explicit_blocks=False, strip_string_quotes=True
    )
    resources: list[tuple[Path, str, str, dict[str, Any]]] = []
    evidence: list[Evidence] = []
    for path in files:
        try:
            parsed = hcl2.loads(path.read_text(), serialization_options=options)
        except Exception as exc:  # the parser raises lark's own types
            evidence.append(_ev(_rel(ctx, path), detail=f"does not parse: {exc}"))
            return ERROR, evidence
        for block in parsed.get("resource", []):
            for rtype, named in block.items():
                for name, body in named.items():
                    resources.append((path, rtype, name, body))
    ok = True
    for path, rtype, name, body in resources:
        if rtype != "aws_db_instance":
            continue
        encrypted = body.get("storage_encrypted") is True
        public = body.get("publicly_accessible", False)  # the provider's default is false
        good = encrypted and public is False
        ok &= good
        evidence.append(
            _ev(
                _rel(ctx, path),
                _tf_line(path, rtype, name),
                passed=good,
                detail=f"{rtype}.{name}: storage_encrypted={body.get('storage_encrypted')}"
                f", publicly_accessible={public}",
            )
        )

    def attached(kind: str, bucket: str) -> dict[str, Any] | None:
        ref = f"${{aws_s3_bucket.{bucket}."
        return next(
            (
                b
                for _, t, _, b in resources
                if t == kind and str(b.get("bucket", "")).startswith(ref)
            ),
            None,
        )

    for path, rtype, name, _body in resources:
        if rtype != "aws_s3_bucket":
            continue
        sse = attached("aws_s3_bucket_server_side_encryption_configuration", name)
        block = attached("aws_s3_bucket_public_access_block", name)
        flags = (
            "block_public_acls",
            "block_public_policy",
            "ignore_public_acls",
            "restrict_public_buckets",
        )
        blocked = block is not None and all(block.get(f) is True for f in flags)
        good = sse is not None and blocked
        ok &= good
        evidence.append(
            _ev(
                _rel(ctx, path),
                _tf_line(path, rtype, name),
                passed=good,
                detail=f"aws_s3_bucket.{name}: encryption "
                f"{'configured' if sse else 'MISSING'}, public access block "
                f"{'all four true' if blocked else 'MISSING or partial'}",
            )
        )
    if len(evidence) == 0:
        return NOT_APPLICABLE, [_ev(_rel(ctx, tf_dir), detail="no RDS instance or S3 bucket")]
    return (PASS if ok else FAIL), evidence


# ------------------------------------------------------------------ dependencies bounded

_UPPER = re.compile(r"(<|<=|==|~=|===)\s*[0-9]")


def check_dependencies_bounded(ctx: ComplianceContext) -> tuple[str, list[Evidence]]:
    """Definition for a library + app repo: every runtime dependency in pyproject.toml has an
    upper bound (<, <=, ~=, ==), so a new major release cannot enter a build unreviewed; exact
    pins belong to the deployable image's lock, not to the library's metadata."""
    path = ctx.root / "pyproject.toml"
    if not path.is_file():
        return NOT_APPLICABLE, [_ev(detail="no pyproject.toml")]
    deps = tomllib.loads(path.read_text()).get("project", {}).get("dependencies", [])
    lines = path.read_text().splitlines()
    evidence = [
        _ev(
            _rel(ctx, path),
            detail="definition: every runtime dependency "
            "([project].dependencies) has an upper bound (<, <=, ~= or ==)",
        )
    ]
    unbounded = []
    for dep in deps:
        spec = dep.split(";", 1)[0]
        if not _UPPER.search(spec):
            unbounded.append(dep)
            line = next((i for i, t in enumerate(lines, 1) if f'"{dep}"' in t), None)
            evidence.append(
                _ev(_rel(ctx, path), line, detail=f"{dep!r} has no upper bound", passed=False)
            )
    evidence.append(
        _ev(
            detail=f"{len(deps) - len(unbounded)} of {len(deps)} runtime dependencies bounded above"
        )
    )
    return (FAIL if unbounded else PASS), evidence


# ------------------------------------------------------------------ ingress TLS


def check_ingress_tls(ctx: ComplianceContext) -> tuple[str, list[Evidence]]:
    """Every Ingress (deploy/k8s and the rendered chart) terminates TLS: spec.tls with a
    secretName; no Ingress at all fails."""
    docs, errors = _manifests(ctx)
    ingresses = [(src, d) for src, d in docs if d.get("kind") == "Ingress"]
    if not ingresses:
        return FAIL, [_ev("deploy/k8s", detail="no Ingress found"), *errors]
    ok = True
    evidence: list[Evidence] = []
    for src, doc in ingresses:
        tls = (doc.get("spec") or {}).get("tls") or []
        good = bool(tls) and all(t.get("secretName") for t in tls)
        ok &= good
        name = (doc.get("metadata") or {}).get("name")
        evidence.append(
            _ev(
                src,
                passed=good,
                detail=f"Ingress {name}: spec.tls "
                f"{[t.get('secretName') for t in tls] if tls else 'MISSING'}",
            )
        )
    if errors:
        return (FAIL if not ok else ERROR), evidence + errors
    return (PASS if ok else FAIL), evidence


CONTROL_SETS: dict[str, tuple[Control, ...]] = {
    "titans-baseline": (
        Control(
            "admin-routes-auth",
            "Admin and approver routes require an API key with the role",
            "critical",
            check_admin_auth,
        ),
        Control(
            "api-keys-hashed", "API keys are stored only as hashes", "critical", check_keys_hashed
        ),
        Control("no-secrets", "No secrets in the repository", "high", check_no_secrets),
        Control(
            "audit-chain",
            "Audit trail present and its hash chain verifies",
            "high",
            check_audit_chain,
        ),
        Control("containers-non-root", "Containers run as non-root", "high", check_non_root),
        Control(
            "terraform-storage",
            "Terraform storage encrypted and not public",
            "high",
            check_terraform_storage,
        ),
        Control(
            "dependencies-bounded",
            "Runtime dependencies bounded above",
            "medium",
            check_dependencies_bounded,
        ),
        Control("ingress-tls", "Kubernetes ingress terminates TLS", "high", check_ingress_tls),
    ),
}


def run_controls(
    standard: str, ctx: ComplianceContext, only: set[str] | None = None
) -> list[ControlResult]:
    """Run a named control set (optionally a subset of its controls by id)."""
    if standard not in CONTROL_SETS:
        raise InputError(
            f"unknown compliance standard {standard!r}; choose one of {', '.join(CONTROL_SETS)}"
        )
    results = []
    for control in CONTROL_SETS[standard]:
        if only is not None and control.id not in only:
            continue
        try:
            status, evidence = control.check(ctx)
        except Exception as exc:  # a control that crashes is an error, never a pass
            log.exception("control %s could not be evaluated", control.id)
            status, evidence = ERROR, [_ev(detail=f"{type(exc).__name__}: {exc}")]
        results.append(ControlResult(control.id, control.title, control.severity, status, evidence))
    return results
