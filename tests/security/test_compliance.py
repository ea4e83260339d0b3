"""titans-baseline controls, each with a passing and a failing fixture."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from sqlalchemy import text

from titans.config import ApiKey, Settings
from titans.errors import InputError
from titans.governance.audit import AuditLogger
from titans.security import compliance
from titans.security.compliance import ComplianceContext, run_controls
from titans.serving.auth import generate_api_key
from titans.store import Store

ROOT = Path(__file__).resolve().parents[2]


def _one(ctx: ComplianceContext, control: str) -> compliance.ControlResult:
    (result,) = run_controls("titans-baseline", ctx, only={control})
    return result


def _details(result: compliance.ControlResult) -> str:
    return " | ".join(str(e["detail"]) for e in result.evidence)


def _write(root: Path, rel: str, body: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body))
    return path


# ---------------------------------------------------------------- admin routes need auth


def test_real_app_admin_routes_answer_401_without_a_key(settings: Settings) -> None:
    result = _one(ComplianceContext(ROOT, settings), "admin-routes-auth")
    assert result.status == "pass", _details(result)
    checked = _details(result)
    assert "POST /admin/promote without a key -> HTTP 401; role check: require_admin" in checked
    assert "GET /approvals/pending without a key -> HTTP 401; role check: require_approver" in (
        checked
    )


def test_admin_route_opened_by_configuration_fails(settings: Settings) -> None:
    opened = settings.model_copy(update={"open_routes": [*settings.open_routes, "/admin/reload"]})
    result = _one(ComplianceContext(ROOT, opened), "admin-routes-auth")
    assert result.status == "fail"
    bad = [e["detail"] for e in result.evidence if e.get("passed") is False]
    assert len(bad) == 1 and bad[0].startswith("POST /admin/reload without a key -> HTTP 200")


def test_admin_route_without_role_dependency_fails(settings: Settings) -> None:
    from fastapi import FastAPI

    def factory(_: Settings) -> FastAPI:
        app = FastAPI()

        @app.post("/admin/wipe")
        def wipe() -> dict[str, str]:
            return {"ok": "yes"}

        return app

    result = _one(ComplianceContext(ROOT, settings, app_factory=factory), "admin-routes-auth")
    assert result.status == "fail"
    assert "role check: NONE" in _details(result)


# ---------------------------------------------------------------- API keys hashed


def test_generated_keys_are_stored_only_hashed(settings: Settings) -> None:
    result = _one(ComplianceContext(ROOT, settings), "api-keys-hashed")
    assert result.status == "pass", _details(result)
    assert "-> HTTP 200" in _details(result)


def test_a_key_scheme_that_keeps_the_raw_key_fails(settings: Settings) -> None:
    def leaky(name: str, roles: list[str]) -> tuple[str, ApiKey]:
        raw, key = generate_api_key(name, roles)
        return raw, key.model_copy(update={"name": f"{name}:{raw}"})  # raw key in the entry

    result = _one(ComplianceContext(ROOT, settings, key_factory=leaky), "api-keys-hashed")
    assert result.status == "fail"
    assert "ops store files: YES" in _details(result)


# ---------------------------------------------------------------- no secrets


def test_no_secrets_follows_the_secret_scan(settings: Settings) -> None:
    clean = {"status": "pass", "findings": [], "files_scanned": 3, "allowlisted": []}
    assert _one(ComplianceContext(ROOT, settings, secrets_scan=clean), "no-secrets").status == (
        "pass"
    )
    leak = {
        "status": "fail",
        "files_scanned": 3,
        "allowlisted": [],
        "findings": [{"path": "app/x.py", "line": 4, "rule_id": "AWS Access Key"}],
    }
    failed = _one(ComplianceContext(ROOT, settings, secrets_scan=leak), "no-secrets")
    assert failed.status == "fail"
    assert failed.evidence[0]["file"] == "app/x.py" and failed.evidence[0]["line"] == 4
    missing = {"status": "scanner_unavailable", "findings": [], "detail": "not installed"}
    assert _one(ComplianceContext(ROOT, settings, secrets_scan=missing), "no-secrets").status == (
        "error"
    )


def test_no_secrets_runs_detect_secrets_on_a_tree(tmp_path: Path, settings: Settings) -> None:
    if compliance.find_tool("detect-secrets") is None:
        pytest.skip("detect-secrets is not installed (dev extra)")
    root = tmp_path / "repo"
    _write(
        root, "app/conf.py", 'TOKEN = "' + "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8" + '"\n'
    )
    empty = _write(tmp_path, "allow.yaml", "[]\n")
    result = _one(ComplianceContext(root, settings, secrets_allowlist=[empty]), "no-secrets")
    assert result.status == "fail"
    assert result.evidence[0]["file"] == "app/conf.py"


# ---------------------------------------------------------------- audit chain


def test_audit_chain_verifies_on_the_configured_store(settings: Settings) -> None:
    store = Store(settings)
    store.upgrade()
    AuditLogger(store).log("promote", actor="ann", model_name="titans-category", model_version=1)
    store.dispose()
    result = _one(ComplianceContext(ROOT, settings), "audit-chain")
    assert result.status == "pass", _details(result)
    assert "ok=True, 1 entries" in _details(result)


def test_tampered_audit_chain_fails(settings: Settings) -> None:
    store = Store(settings)
    store.upgrade()
    audit = AuditLogger(store)
    audit.log("promote", actor="ann", model_name="titans-category", model_version=1)
    audit.log("rollback", actor="bob", model_name="titans-category", model_version=1)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE audit_entries SET actor = 'mallory' WHERE seq = 1"))
    store.dispose()
    result = _one(ComplianceContext(ROOT, settings), "audit-chain")
    assert result.status == "fail"
    assert "broken at entry 1" in _details(result)


def test_missing_ops_store_fails_without_creating_one(settings: Settings) -> None:
    result = _one(ComplianceContext(ROOT, settings), "audit-chain")
    assert result.status == "fail"
    assert "no ops store" in _details(result)
    assert not (settings.home_dir / "titans.db").exists()


# ---------------------------------------------------------------- non-root containers

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  template:
    spec:
      securityContext: {runAsNonRoot: %s}
      containers:
        - name: api
          image: x:1
"""


def test_non_root_passes_with_user_and_run_as_non_root(tmp_path: Path, settings: Settings) -> None:
    _write(tmp_path, "deploy/docker/api.Dockerfile", "FROM python:3.11-slim\nUSER 10001:10001\n")
    _write(tmp_path, "deploy/k8s/api.yaml", DEPLOYMENT % "true")
    result = _one(ComplianceContext(tmp_path, settings), "containers-non-root")
    assert result.status == "pass", _details(result)


def test_dockerfile_without_user_fails(tmp_path: Path, settings: Settings) -> None:
    # a USER in the build stage does not carry over to the final stage
    _write(
        tmp_path,
        "deploy/docker/api.Dockerfile",
        'FROM python:3.11 AS build\nUSER app\nFROM python:3.11-slim\nCMD ["x"]\n',
    )
    result = _one(ComplianceContext(tmp_path, settings), "containers-non-root")
    assert result.status == "fail"
    assert result.evidence[0]["detail"] == "final stage USER MISSING"


def test_root_user_and_pod_without_run_as_non_root_fail(tmp_path: Path, settings: Settings) -> None:
    _write(tmp_path, "deploy/docker/api.Dockerfile", "FROM python:3.11-slim\nUSER root\n")
    _write(tmp_path, "deploy/k8s/api.yaml", DEPLOYMENT % "false")
    result = _one(ComplianceContext(tmp_path, settings), "containers-non-root")
    assert result.status == "fail"
    assert [e["passed"] for e in result.evidence] == [False, False]
    assert "lacks runAsNonRoot" in result.evidence[1]["detail"]


def test_real_repository_containers_are_non_root(settings: Settings) -> None:
    result = _one(ComplianceContext(ROOT, settings), "containers-non-root")
    assert result.status == "pass", _details(result)


# ---------------------------------------------------------------- terraform storage

TF = """\
resource "aws_db_instance" "main" {
  storage_encrypted   = %s
  publicly_accessible = %s
}

resource "aws_s3_bucket" "artifacts" {
  bucket = "a"
}

resource "aws_s3_bucket_server_side_encryption_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "aws:kms"
    }
  }
}
%s
"""
BLOCK = """
resource "aws_s3_bucket_public_access_block" "artifacts" {
  bucket                  = aws_s3_bucket.artifacts.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}
"""


def test_terraform_encrypted_private_storage_passes(tmp_path: Path, settings: Settings) -> None:
    _write(tmp_path, "deploy/terraform/main.tf", TF % ("true", "false", BLOCK))
    result = _one(ComplianceContext(tmp_path, settings), "terraform-storage")
    assert result.status == "pass", _details(result)
    assert result.evidence[0]["line"] == 1 and result.evidence[1]["line"] == 6


@pytest.mark.parametrize(
    ("encrypted", "public", "block", "bad"),
    [("false", "false", BLOCK, 0), ("true", "true", BLOCK, 0), ("true", "false", "", 1)],
)
def test_terraform_unencrypted_public_or_unblocked_fails(
    tmp_path: Path, settings: Settings, encrypted: str, public: str, block: str, bad: int
) -> None:
    _write(tmp_path, "deploy/terraform/main.tf", TF % (encrypted, public, block))
    result = _one(ComplianceContext(tmp_path, settings), "terraform-storage")
    assert result.status == "fail"
    assert result.evidence[bad]["passed"] is False


def test_terraform_absent_is_not_applicable_and_real_repo_passes(
    tmp_path: Path, settings: Settings
) -> None:
    assert _one(ComplianceContext(tmp_path, settings), "terraform-storage").status == (
        "not-applicable"
    )
    real = _one(ComplianceContext(ROOT, settings), "terraform-storage")
    assert real.status == "pass", _details(real)


# ---------------------------------------------------------------- dependencies bounded


def test_bounded_dependencies_pass_and_open_ended_fail(tmp_path: Path, settings: Settings) -> None:
    pyproject = '[project]\nname = "x"\ndependencies = [\n  "a>=1,<2",\n  "b~=3.1",\n%s]\n'
    _write(tmp_path, "pyproject.toml", pyproject % "")
    assert _one(ComplianceContext(tmp_path, settings), "dependencies-bounded").status == "pass"
    _write(tmp_path, "pyproject.toml", pyproject % '  "c>=15",\n')
    result = _one(ComplianceContext(tmp_path, settings), "dependencies-bounded")
    assert result.status == "fail"
    assert result.evidence[1] == {
        "file": "pyproject.toml",
        "line": 6,
        "detail": "'c>=15' has no upper bound",
        "passed": False,
    }


# ---------------------------------------------------------------- ingress TLS

INGRESS = """\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: api}
spec:
%s  rules:
    - host: api.example.com
"""


def test_ingress_with_tls_passes(tmp_path: Path, settings: Settings) -> None:
    tls = "  tls:\n    - hosts: [api.example.com]\n      secretName: api-tls\n"
    _write(tmp_path, "deploy/k8s/ingress.yaml", INGRESS % tls)
    result = _one(ComplianceContext(tmp_path, settings), "ingress-tls")
    assert result.status == "pass", _details(result)


def test_ingress_without_tls_fails(tmp_path: Path, settings: Settings) -> None:
    _write(tmp_path, "deploy/k8s/ingress.yaml", INGRESS % "")
    result = _one(ComplianceContext(tmp_path, settings), "ingress-tls")
    assert result.status == "fail"
    assert "spec.tls MISSING" in _details(result)


def test_no_ingress_at_all_fails(tmp_path: Path, settings: Settings) -> None:
    _write(
        tmp_path, "deploy/k8s/service.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n"
    )
    result = _one(ComplianceContext(tmp_path, settings), "ingress-tls")
    assert result.status == "fail"
    assert result.evidence[0]["detail"] == "no Ingress found"


def test_real_repository_ingresses_terminate_tls(settings: Settings) -> None:
    result = _one(ComplianceContext(ROOT, settings), "ingress-tls")
    assert result.status == "pass", _details(result)
    assert any(e["file"] == "deploy/k8s/ingress.yaml" for e in result.evidence)


# ---------------------------------------------------------------- the registry


def test_unknown_standard_names_the_known_ones(settings: Settings) -> None:
    with pytest.raises(InputError, match="titans-baseline"):
        run_controls("soc2", ComplianceContext(ROOT, settings))


def test_a_control_that_crashes_is_an_error_not_a_pass(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_: ComplianceContext) -> tuple[str, list[dict[str, object]]]:
        raise RuntimeError("parser exploded")

    control = compliance.Control("broken", "A control that crashes", "high", broken)
    monkeypatch.setitem(compliance.CONTROL_SETS, "test-set", (control,))
    (result,) = run_controls("test-set", ComplianceContext(ROOT, settings))
    assert (result.status, _details(result)) == ("error", "RuntimeError: parser exploded")
