"""The AWS Terraform in deploy/terraform, checked by python-hcl2, terraform and checkov.

Every ``.tf`` file (and the example tfvars) must parse with python-hcl2; checkov alone is not
enough because it exits 0 on a file it cannot parse. ``terraform fmt -check`` judges the layout,
``terraform validate`` the schema wherever the AWS provider is available without a download
(a local plugin mirror, or CI). checkov must report zero failed checks and no parse error; each
check skipped in the code carries a reason. A broken file, a mis-formatted file and an insecure
change prove the parser and the tools really run. Structural checks then read the parsed HCL:
the database is encrypted, private and backed up, its password never sits in a plain variable,
the buckets are private, the nodes live in private subnets and the providers are pinned.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from _support.checkov import checkov_report as run_checkov

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "deploy" / "terraform"
TFVARS_EXAMPLE = TF_DIR / "terraform.tfvars.example"
# a local provider mirror (filesystem layout of `terraform providers mirror`)
PLUGIN_DIR = Path(os.environ.get("TITANS_TF_PLUGIN_DIR", "/opt/tf-plugins"))
INSTALL = {
    "hcl2": "pip install python-hcl2 (the dev extra)",
    "terraform": "the terraform CLI (>= 1.6) on PATH",
    "checkov": (
        "checkov in its own venv, never the project venv (it replaces the hcl2 module): "
        "python3 -m venv .tools/checkov && .tools/checkov/bin/pip install checkov"
    ),
    "aws provider": (
        "the hashicorp/aws provider: a mirror at $TITANS_TF_PLUGIN_DIR (default /opt/tf-plugins) "
        "or network access for `terraform init`"
    ),
}
SKIP_COMMENT = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?")
CHECK_ID = re.compile(r"^CKV2?_[A-Z]+_\d+$")
ONE_VAR = re.compile(r"^\$\{var\.(\w+)\}$")


def _missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is missing; CI must install it: {INSTALL[what]}")
    pytest.skip(f"{what} is not installed ({INSTALL[what]})")


def _tool(name: str) -> str:
    candidates = [shutil.which(name)]
    if name == "checkov":
        candidates.insert(0, str(ROOT / ".tools" / "checkov" / "bin" / "checkov"))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    _missing(name)
    raise AssertionError("unreachable")  # pragma: no cover


def _hcl2() -> Any:
    try:
        import hcl2
    except ImportError:
        _missing("hcl2")
    return hcl2


def _parse(text: str) -> dict[str, Any]:
    hcl2 = _hcl2()
    options = hcl2.SerializationOptions(
        with_comments=False, explicit_blocks=False, strip_string_quotes=True
    )
    result: dict[str, Any] = hcl2.loads(text, serialization_options=options)
    return result


def _run(args: list[str], cwd: Path = ROOT, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CHECKPOINT_DISABLE": "1"}
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def _tf_files() -> list[Path]:
    return sorted(TF_DIR.glob("*.tf"))


def _copy(tmp_path: Path) -> Path:
    work = tmp_path / "terraform"
    work.mkdir()
    for f in _tf_files():
        shutil.copy(f, work / f.name)
    return work


@pytest.fixture(scope="module")
def tf() -> dict[str, Any]:
    """All files merged: {"resource": {type: {name: body}}, "data": ..., "variable": {...}, ...}."""
    merged: dict[str, Any] = {"resource": {}, "data": {}, "variable": {}, "output": {}}
    merged["terraform"] = []
    for f in _tf_files():
        parsed = _parse(f.read_text("utf-8"))
        for kind in ("resource", "data"):
            for block in parsed.get(kind, []):
                for rtype, named in block.items():
                    merged[kind].setdefault(rtype, {}).update(named)
        for kind in ("variable", "output"):
            for block in parsed.get(kind, []):
                merged[kind].update(block)
        merged["terraform"].extend(parsed.get("terraform", []))
    return merged


def _default(tf: dict[str, Any], value: Any) -> Any:
    """A literal, or the default of the variable a bare `${var.x}` names."""
    if isinstance(value, str) and (m := ONE_VAR.match(value)):
        variable = tf["variable"][m.group(1)]
        assert "default" in variable, f"var.{m.group(1)} has no default to check"
        return variable["default"]
    return value


def _checkov(directory: Path) -> dict[str, Any]:
    return run_checkov(directory, "terraform")


@pytest.fixture(scope="module")
def checkov_report() -> dict[str, Any]:
    return _checkov(TF_DIR)


# --- the parser, the formatter, the validator -------------------------------------


def test_the_expected_files_exist() -> None:
    names = {f.name for f in _tf_files()}
    assert {"versions.tf", "variables.tf", "outputs.tf"} <= names
    assert TFVARS_EXAMPLE.is_file()
    assert (TF_DIR / "README.md").is_file()


@pytest.mark.parametrize("path", [*_tf_files(), TFVARS_EXAMPLE], ids=lambda p: p.name)
def test_every_file_parses_as_hcl2(path: Path) -> None:
    parsed = _parse(path.read_text("utf-8"))
    assert parsed, f"{path.name} parsed to nothing"


def test_the_parser_rejects_a_broken_file() -> None:
    text = (TF_DIR / "rds.tf").read_text("utf-8")
    broken = text.rstrip().removesuffix("}")  # drop the last closing brace
    _hcl2()
    from lark.exceptions import UnexpectedInput  # python-hcl2's parser

    with pytest.raises(UnexpectedInput, match=r"RBRACE"):
        _parse(broken)


def test_terraform_fmt_check_passes() -> None:
    result = _run([_tool("terraform"), "fmt", "-check", "-recursive", "-diff", str(TF_DIR)])
    fix = "run `terraform fmt -recursive deploy/terraform`"
    assert result.returncode == 0, f"{fix}:\n{result.stdout}"


def test_terraform_fmt_check_catches_bad_layout(tmp_path: Path) -> None:
    work = _copy(tmp_path)
    rds = work / "rds.tf"
    rds.write_text(rds.read_text("utf-8").replace("  engine         = ", "  engine = "), "utf-8")
    result = _run([_tool("terraform"), "fmt", "-check", "-recursive", str(work)])
    assert result.returncode != 0
    assert "rds.tf" in result.stdout


def test_terraform_validate_passes(tmp_path: Path) -> None:
    terraform = _tool("terraform")
    work = _copy(tmp_path)
    init = ["init", "-backend=false", "-input=false", "-no-color"]
    if (PLUGIN_DIR / "registry.terraform.io" / "hashicorp" / "aws").is_dir():
        init.append(f"-plugin-dir={PLUGIN_DIR}")
    elif os.environ.get("CI") != "true":
        pytest.skip(f"no AWS provider to validate with ({INSTALL['aws provider']})")
    initialised = _run([terraform, *init], cwd=work)
    assert initialised.returncode == 0, initialised.stdout + initialised.stderr
    result = _run([terraform, "validate", "-json", "-no-color"], cwd=work)
    report = json.loads(result.stdout)
    assert report["valid"] is True, json.dumps(report["diagnostics"], indent=2)
    assert report["error_count"] == 0


# --- checkov ----------------------------------------------------------------------


def test_checkov_reports_no_failed_checks(checkov_report: dict[str, Any]) -> None:
    summary = checkov_report["summary"]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for c in checkov_report["results"].get("failed_checks", [])
    ]
    assert summary["parsing_errors"] == 0, summary
    assert summary["failed"] == 0, "\n".join(failed)
    # it really looked at the stack: every resource, well over a hundred checks
    assert summary["resource_count"] >= 50, summary
    assert summary["passed"] >= 150, summary


def test_every_checkov_skip_names_a_check_and_a_reason(checkov_report: dict[str, Any]) -> None:
    skips = [
        (f.name, m.group(1), (m.group(2) or "").strip())
        for f in _tf_files()
        for m in SKIP_COMMENT.finditer(f.read_text("utf-8"))
    ]
    for name, check_id, reason in skips:
        assert CHECK_ID.match(check_id), f"{name}: {check_id} is not a checkov check id"
        assert len(reason) >= 20, f"{name}: the skip of {check_id} needs a reason"
    # checkov honoured exactly these skips, no more (a typo'd id would not count)
    assert checkov_report["summary"]["skipped"] == len(skips)


def test_checkov_catches_a_public_database(tmp_path: Path) -> None:
    work = _copy(tmp_path)
    rds = work / "rds.tf"
    text = rds.read_text("utf-8")
    assert "publicly_accessible    = false" in text
    rds.write_text(text.replace("publicly_accessible    = false", "publicly_accessible = true"))
    report = _checkov(work)
    failed = {c["check_id"] for c in report["results"].get("failed_checks", [])}
    assert "CKV_AWS_17" in failed, failed


# --- structure ----------------------------------------------------------------------


def test_providers_are_pinned(tf: dict[str, Any]) -> None:
    versions = _parse((TF_DIR / "versions.tf").read_text("utf-8"))
    (block,) = versions["terraform"]
    assert re.search(r">=\s*\d+\.\d+", block["required_version"])
    providers = {k: v for p in block["required_providers"] for k, v in p.items()}
    assert "aws" in providers
    for name, spec in providers.items():
        assert re.fullmatch(r"[\w-]+/[\w-]+", spec["source"]), name
        assert re.search(r"(~>|=|<)\s*\d+\.\d+", spec["version"]), f"{name} is not pinned"
    # the pins live in versions.tf only
    assert sum("required_providers" in b for b in tf["terraform"]) == 1


def test_database_is_encrypted_private_and_backed_up(tf: dict[str, Any]) -> None:
    (db,) = tf["resource"]["aws_db_instance"].values()
    assert db["engine"] == "postgres"
    assert db["storage_encrypted"] is True
    assert db["kms_key_id"].startswith("${aws_kms_key.")
    assert db["publicly_accessible"] is False
    assert _default(tf, db["backup_retention_period"]) >= 7
    assert db["skip_final_snapshot"] is False
    # the retention variable refuses anything below a week
    retention = ONE_VAR.match(db["backup_retention_period"])
    if retention:
        conditions = [v["condition"] for v in tf["variable"][retention.group(1)]["validation"]]
        floors = [int(n) for c in conditions for n in re.findall(r">=\s*(\d+)", c)]
        assert floors and min(floors) >= 7, conditions
    # its subnets are the private ones
    groups = tf["resource"]["aws_db_subnet_group"]
    group_name = db["db_subnet_group_name"].split(".")[1]
    assert groups[group_name]["subnet_ids"] == "${aws_subnet.private[*].id}"


def test_database_password_is_never_a_plain_variable(tf: dict[str, Any]) -> None:
    (db,) = tf["resource"]["aws_db_instance"].values()
    if db.get("manage_master_user_password") is True:
        assert "password" not in db
    else:
        password = ONE_VAR.match(db["password"])
        assert password, "the password must come from a variable or Secrets Manager"
        variable = tf["variable"][password.group(1)]
        assert variable.get("sensitive") is True
        assert "default" not in variable
    for name, variable in tf["variable"].items():
        if re.search(r"password|secret", name):
            assert variable.get("sensitive") is True, f"var.{name} must be sensitive"


def test_database_accepts_only_the_cluster(tf: dict[str, Any]) -> None:
    ingress = tf["resource"]["aws_vpc_security_group_ingress_rule"]
    db_sg = "${aws_security_group.db.id}"
    db_rules = [r for r in ingress.values() if r["security_group_id"] == db_sg]
    assert db_rules
    for rule in db_rules:
        assert "cidr_ipv4" not in rule and "cidr_ipv6" not in rule
        assert "cluster_security_group_id" in rule["referenced_security_group_id"]
        assert (rule["from_port"], rule["to_port"]) == (5432, 5432)


def test_every_bucket_blocks_public_access(tf: dict[str, Any]) -> None:
    buckets = set(tf["resource"]["aws_s3_bucket"])
    blocks = tf["resource"]["aws_s3_bucket_public_access_block"]
    covered = {b["bucket"].split(".")[1] for b in blocks.values()}
    assert covered == buckets
    for name, block in blocks.items():
        for flag in (
            "block_public_acls",
            "block_public_policy",
            "ignore_public_acls",
            "restrict_public_buckets",
        ):
            assert block[flag] is True, f"{name}.{flag}"


def test_artifact_bucket_is_versioned_and_kms_encrypted(tf: dict[str, Any]) -> None:
    res = tf["resource"]
    versioning = res["aws_s3_bucket_versioning"]["artifacts"]
    assert versioning["bucket"] == "${aws_s3_bucket.artifacts.id}"
    assert versioning["versioning_configuration"][0]["status"] == "Enabled"
    sse = res["aws_s3_bucket_server_side_encryption_configuration"]["artifacts"]
    default = sse["rule"][0]["apply_server_side_encryption_by_default"][0]
    assert default["sse_algorithm"] == "aws:kms"
    assert default["kms_master_key_id"].startswith("${aws_kms_key.")


def test_nodes_run_in_private_subnets(tf: dict[str, Any]) -> None:
    res = tf["resource"]
    for group in res["aws_eks_node_group"].values():
        assert group["subnet_ids"] == "${aws_subnet.private[*].id}"
    assert "remote_access" not in next(iter(res["aws_eks_node_group"].values()))
    private = res["aws_subnet"]["private"]
    assert private.get("map_public_ip_on_launch", False) is False
    # private subnets route to the internet only through NAT, never an internet gateway
    routes = res["aws_route_table"]["private"]["route"]
    assert routes and all("gateway_id" not in r and "nat_gateway_id" in r for r in routes)
    (association,) = [
        a
        for a in res["aws_route_table_association"].values()
        if a["subnet_id"].startswith("${aws_subnet.private[")
    ]
    assert association["route_table_id"].startswith("${aws_route_table.private[")


def test_cluster_is_private_encrypted_and_logged(tf: dict[str, Any]) -> None:
    (cluster,) = tf["resource"]["aws_eks_cluster"].values()
    vpc = cluster["vpc_config"][0]
    assert vpc["endpoint_private_access"] is True
    assert _default(tf, vpc["endpoint_public_access"]) is False
    assert vpc["subnet_ids"] == "${aws_subnet.private[*].id}"
    assert cluster["encryption_config"][0]["resources"] == ["secrets"]
    assert set(cluster["enabled_cluster_log_types"]) == {
        "api",
        "audit",
        "authenticator",
        "controllerManager",
        "scheduler",
    }


def test_kms_rotates_and_vpc_has_flow_logs(tf: dict[str, Any]) -> None:
    res = tf["resource"]
    assert all(k["enable_key_rotation"] is True for k in res["aws_kms_key"].values())
    flow_logs = [(f["vpc_id"], f["traffic_type"]) for f in res["aws_flow_log"].values()]
    assert ("${aws_vpc.main.id}", "ALL") in flow_logs


def test_iam_grants_no_wildcards_outside_the_key_policy(tf: dict[str, Any]) -> None:
    documents = tf["data"]["aws_iam_policy_document"]
    for name, document in documents.items():
        for statement in document["statement"]:
            if statement.get("effect") == "Deny" or name == "kms":
                continue  # a key policy's "*" means the key itself
            actions = statement["actions"]
            assert not any(a == "*" or a.endswith(":*") for a in actions), (name, actions)
            assert "*" not in statement.get("resources", []), (name, statement)
    # managed policies attached are the narrow AWS ones, never admin or power user
    attachments = tf["resource"]["aws_iam_role_policy_attachment"]
    arns = " ".join(str(a["policy_arn"]) for a in attachments.values())
    assert "AdministratorAccess" not in arns and "PowerUserAccess" not in arns


def test_outputs_and_example_tfvars_match_the_variables(tf: dict[str, Any]) -> None:
    assert {"eks_cluster_name", "db_endpoint", "artifact_bucket", "vpc_id"} <= set(tf["output"])
    for name, output in tf["output"].items():
        assert output.get("description"), f"output {name} needs a description"
    example = _parse(TFVARS_EXAMPLE.read_text("utf-8"))
    unknown = set(example) - set(tf["variable"])
    assert not unknown, f"terraform.tfvars.example sets undeclared variables: {unknown}"
    assert not any(re.search(r"password|secret", k) for k in example)
    for name, variable in tf["variable"].items():
        assert variable.get("description"), f"var.{name} needs a description"
