"""The CI workflow only calls things that exist; pre-commit runs the hooks the project promises."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "main.yml"
PRE_COMMIT_CONFIG = REPO / ".pre-commit-config.yaml"
NOT_BUILT_MARK = "[not built yet]"

# Tools a step may call without them being part of this repo.
GENERIC_TOOLS = frozenset(
    {"echo", "pip", "pip3", "pre-commit", "mkdir", "ls", "cat", "cd", "test", "du", "df", "tee"}
)
PYTHON_MODULES = frozenset({"pip", "venv"})
PYTHONS = frozenset({"python", "python3"})
SHELLS = frozenset({"bash", "sh"})
VENV_BIN = (".venv/bin/", "./.venv/bin/")


# ---------------------------------------------------------------- the checker


def makefile_targets(text: str) -> set[str]:
    """Explicit targets of a Makefile (``a b: deps`` names two; ``X := v`` names none)."""
    targets: set[str] = set()
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9_.][A-Za-z0-9_. -]*?)\s*::?(?!=)", line)
        if match:
            targets.update(match.group(1).split())
    return targets - {".PHONY", ".DEFAULT_GOAL"}


def commands_of(script: str) -> list[list[str]]:
    """The simple commands of a `run:` script: split on newlines, &&, ||, ; and pipes."""
    commands = []
    for line in script.replace("\\\n", " ").splitlines():
        for part in re.split(r"&&|\|\||;|\|", line):
            tokens = _drop_redirections(shlex.split(part, comments=True))
            while tokens and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", tokens[0]):
                tokens.pop(0)  # VAR=value before the command
            if tokens and tokens[0] == "sudo":
                tokens.pop(0)
            if tokens:
                commands.append(tokens)
    return commands


def _drop_redirections(tokens: list[str]) -> list[str]:
    kept: list[str] = []
    skip_next = False
    for token in tokens:
        if skip_next:
            skip_next = False
            continue
        match = re.match(r"^\d*(>>|>|<)(&\d+)?(.*)$", token)
        if match:
            skip_next = not match.group(2) and not match.group(3)  # target is the next token
            continue
        kept.append(token)
    return kept


def check_command(tokens: list[str], *, cli: Any, make_targets: set[str], repo: Path) -> str | None:
    """None when the command exists in this repo, else what is wrong with it."""
    program = tokens[0]
    name = program
    for prefix in VENV_BIN:  # the project's own install puts these there
        name = name.removeprefix(prefix)
    args = tokens[1:]
    if name == "make":
        targets = [a for a in args if not a.startswith("-") and "=" not in a]
        if not targets:
            return "a bare `make`: name the target"
        unknown = [t for t in targets if t not in make_targets]
        return f"no Makefile target {', '.join(unknown)}" if unknown else None
    if name == "titans":
        return check_titans(args, cli)
    if name in PYTHONS:
        if args[:1] == ["-m"]:
            module = args[1] if len(args) > 1 else ""
            return None if module in PYTHON_MODULES else f"`python -m {module}` is not allowed"
        script = next((a for a in args if not a.startswith("-")), None)
        return _check_repo_file(script, repo) if script else "python without a script"
    if name in SHELLS:
        script = next((a for a in args if not a.startswith("-")), None)
        return _check_repo_file(script, repo) if script else f"{name} without a script"
    if "/" in name:
        return _check_repo_file(name, repo)
    if name in GENERIC_TOOLS:
        return None
    return f"`{name}` is not a make target, titans command, file of this repo or allowed tool"


def _check_repo_file(path: str, repo: Path) -> str | None:
    target = (repo / path).resolve()
    if not target.is_relative_to(repo.resolve()):
        return f"{path} is outside the repository"
    return None if target.exists() else f"{path} does not exist in the repository"


def check_titans(args: list[str], cli: Any) -> str | None:
    """Walk the click tree of the `titans` app along ``args``; the leaf must parse them.

    Typer vendors its own click, so groups are recognised by their ``commands`` mapping and
    parse errors by typer's public exception classes.
    """
    command = cli
    path = ["titans"]
    rest = list(args)
    if any(a in ("--help", "-h") for a in rest):
        rest = rest[: rest.index("--help" if "--help" in rest else "-h")]
        help_only = True
    else:
        help_only = False
    while isinstance(getattr(command, "commands", None), dict):
        while rest and rest[0].startswith("-"):  # group flags such as --debug
            rest.pop(0)
        if not rest:
            if help_only or command is cli or command.invoke_without_command:
                return None
            return f"`{' '.join(path)}` needs a command ({', '.join(sorted(command.commands))})"
        word = rest.pop(0)
        sub = command.commands.get(word)
        if sub is None:
            known = ", ".join(sorted(command.commands))
            return f"`{' '.join(path)}` has no command {word!r} (it has: {known})"
        path.append(word)
        if (sub.help or "").startswith(NOT_BUILT_MARK):
            return f"`{' '.join(path)}` is not built yet"
        command = sub
    if help_only:
        return None
    try:
        command.make_context(" ".join(path), rest, resilient_parsing=False)
    except typer.BadParameter as exc:
        if type(exc).__name__ != "MissingParameter":
            return None  # a value check (e.g. a file the job makes first) is a runtime matter
        return f"`{' '.join(path)}`: {exc.format_message()}"
    except typer.TyperException as exc:  # usage errors: unknown option, extra argument, ...
        return f"`{' '.join(path)}`: {getattr(exc, 'format_message', exc.__str__)()}"
    return None


def workflow_problems(
    workflow: dict[str, Any], *, cli: Any, make_targets: set[str], repo: Path
) -> list[str]:
    problems = []
    for job_name, job in workflow["jobs"].items():
        for number, step in enumerate(job.get("steps", []), start=1):
            if "run" not in step:
                continue
            label = f"job {job_name!r}, step {number} ({step.get('name', 'unnamed')!r})"
            for tokens in commands_of(step["run"]):
                problem = check_command(tokens, cli=cli, make_targets=make_targets, repo=repo)
                if problem:
                    problems.append(f"{label}: `{shlex.join(tokens)}`: {problem}")
    return problems


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    loaded = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def titans_cli() -> Any:
    from titans.cli import _register_groups, app

    _register_groups()
    return typer.main.get_command(app)


@pytest.fixture(scope="module")
def make_targets() -> set[str]:
    return makefile_targets((REPO / "Makefile").read_text())


@pytest.fixture(scope="module")
def toy_cli() -> Any:
    """A small app shaped like `titans`: one built group, one command, one group not built."""
    from titans.cli._common import not_built

    app = typer.Typer()
    data = typer.Typer()

    @data.command("generate")
    def generate(rows: int = typer.Option(..., "--rows"), out: Path = typer.Option(..., "-o")):
        """Generate."""

    @app.command("train")
    def train(mode: str = typer.Option("ci", "--mode")) -> None:
        """Train."""

    app.add_typer(data, name="data")
    app.add_typer(not_built("deploy", "a later issue"), name="deploy")
    return typer.main.get_command(app)


# ---------------------------------------------------------------- the workflow


def test_every_run_step_calls_something_that_exists(
    workflow: dict[str, Any], titans_cli: Any, make_targets: set[str]
) -> None:
    problems = workflow_problems(workflow, cli=titans_cli, make_targets=make_targets, repo=REPO)
    assert not problems, "steps of .github/workflows/main.yml that would fail:\n" + "\n".join(
        problems
    )


def test_workflow_has_the_stages_in_order(workflow: dict[Any, Any]) -> None:
    jobs = workflow["jobs"]
    assert list(jobs) == [
        "code-quality",
        "security",
        "benchmarks",
        "data-validation",
        "model-training",
        "deployment",
    ]
    assert jobs["security"]["needs"] == jobs["benchmarks"]["needs"] == "code-quality"
    security_runs = " ; ".join(s.get("run", "") for s in jobs["security"]["steps"])
    assert "titans security scan --fail-on high" in security_runs
    assert "make bench QUICK=1" in " ; ".join(s.get("run", "") for s in jobs["benchmarks"]["steps"])
    assert jobs["data-validation"]["needs"] == "code-quality"
    assert jobs["model-training"]["needs"] == "data-validation"
    assert jobs["deployment"]["needs"] == "model-training"
    for name, job in jobs.items():
        setup = [s for s in job["steps"] if "actions/setup-python" in str(s.get("uses", ""))]
        assert setup, f"job {name} does not set up Python"
        assert setup[0]["with"]["cache"] == "pip", f"job {name} does not cache pip"
    code_quality_runs = " ; ".join(s.get("run", "") for s in jobs["code-quality"]["steps"])
    for needed in ("make lint", "pre-commit run --all-files", "bash .ci/run"):
        assert needed in code_quality_runs, f"code-quality does not run {needed!r}"
    # YAML 1.1 reads the key `on` as True
    triggers = workflow["on"] if "on" in workflow else workflow[True]
    assert {"push", "pull_request"} <= set(triggers)


@pytest.mark.parametrize(
    ("step", "problem"),
    [
        ("make lint && make test", None),
        ("make nope", "no Makefile target nope"),
        ("titans data generate --rows 10 -o x.csv | tee log", None),
        (".venv/bin/titans train --mode ci", None),
        ("titans --help", None),
        ("titans deploy staging", "not built yet"),
        ("titans data nope", "has no command 'nope'"),
        ("titans data", "needs a command"),
        ("titans data generate --rows 10 -o x.csv --bogus", "No such option"),
        ("titans data generate -o x.csv", "Missing option"),
        ("bash .ci/run", None),
        ("python benchmarks/nowhere.py", "does not exist"),
        ("python -m pip install .", None),
        ("python -m http.server", "not allowed"),
        ('echo "$PWD/.venv/bin" >> "$GITHUB_PATH"', None),
        ("curl -sSf https://example.invalid | sh", "`curl` is not a make target"),
        ("curl -sSf https://example.invalid | sh", "sh without a script"),
        ("./deploy.sh", "does not exist"),
        ("FOO=1 make test; ls", None),
    ],
)
def test_checker_tells_existing_commands_from_missing_ones(
    step: str, problem: str | None, toy_cli: Any
) -> None:
    workflow = {"jobs": {"j": {"steps": [{"name": "s", "run": step}]}}}
    found = workflow_problems(workflow, cli=toy_cli, make_targets={"lint", "test"}, repo=REPO)
    if problem is None:
        assert found == []
    else:
        assert any(problem in f for f in found), found
        assert all(f.startswith("job 'j', step 1 ('s'): `") for f in found)


def test_makefile_targets_reads_multi_target_rules_and_skips_assignments() -> None:
    text = "SHELL := /bin/bash\nX ?= 1\n$(STAMP): a\nvenv install: $(STAMP)\n.PHONY: a\nlint:\n"
    assert makefile_targets(text) == {"venv", "install", "lint"}


# ---------------------------------------------------------------- pre-commit


@pytest.fixture(scope="module")
def hooks() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load(PRE_COMMIT_CONFIG.read_text())
    return {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}


def test_pre_commit_has_the_required_hooks(hooks: dict[str, dict[str, Any]]) -> None:
    required = {
        "trailing-whitespace",
        "end-of-file-fixer",
        "check-yaml",
        "check-added-large-files",
        "ruff",
        "ruff-format",
        "mypy",
    }
    assert required <= set(hooks), f"missing hooks: {sorted(required - set(hooks))}"
    assert "--fix" in hooks["ruff"].get("args", [])
    assert not {"black", "isort", "flake8"} & set(hooks), "ruff replaces black, isort and flake8"


def test_pre_commit_hooks_call_tools_the_dev_install_provides(
    hooks: dict[str, dict[str, Any]],
) -> None:
    bin_dir = Path(sys.executable).parent
    for hook_id, hook in hooks.items():
        if hook.get("language") != "system":
            continue
        program = shlex.split(hook["entry"])[0]
        assert program.startswith(".venv/bin/"), f"hook {hook_id} should run the venv's tool"
        tool = bin_dir / Path(program).name
        assert tool.exists(), f"hook {hook_id}: {tool} missing; is the dev extra installed?"


def test_pre_commit_accepts_the_config_and_runs_a_hook(tmp_path: Path) -> None:
    pre_commit = Path(sys.executable).with_name("pre-commit")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}
    checked = subprocess.run(
        [str(pre_commit), "validate-config", str(PRE_COMMIT_CONFIG)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: pre-commit run needs one")
    if not (REPO / ".venv" / "bin" / "check-yaml").exists():
        pytest.skip("no .venv in the checkout (make install makes it): the hooks run its tools")
    ran = subprocess.run(
        [str(pre_commit), "run", "check-yaml", "--files", str(WORKFLOW), str(PRE_COMMIT_CONFIG)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "Passed" in ran.stdout
