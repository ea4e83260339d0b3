"""The `titans` command: thin Typer groups that parse, call a module and print with rich."""

from __future__ import annotations

import sys

import typer

from titans.cli import _common
from titans.errors import TitansError

app = typer.Typer(
    name="titans",
    help="Titans MLOps: train, register, validate, serve, monitor and retrain the Titans models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_state: dict[str, bool] = {"debug": False, "registered": False}


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    """Titans MLOps."""
    _state["debug"] = debug


def _register_groups() -> None:
    """Attach every command group once (idempotent, so tests may call it too)."""
    if _state.get("registered"):
        return
    _state["registered"] = True
    from titans.cli import data as data_cmd
    from titans.cli import demo as demo_cmd
    from titans.cli import train as train_cmd

    app.add_typer(
        data_cmd.app, name="data", help="Generate, validate and version transaction data."
    )
    app.command("demo", help="Run the loop once on synthetic data and print each step.")(
        demo_cmd.demo
    )
    from titans.cli import db as db_cmd
    from titans.cli import governance as governance_cmd

    app.add_typer(db_cmd.app, name="db", help="Apply and inspect ops store migrations.")
    app.add_typer(governance_cmd.app, name="governance", help="Approvals and the audit trail.")
    app.command("train", help="Train the models, log them to MLflow and register versions.")(
        train_cmd.train
    )
    from titans.cli import validate as validate_cmd

    app.command("validate", help="Validate a model: performance, stability, fairness gates.")(
        validate_cmd.validate
    )
    from titans.cli import experiments as experiments_cmd

    app.add_typer(experiments_cmd.app, name="experiments")
    from titans.cli import registry as registry_cmd

    app.add_typer(registry_cmd.app, name="registry")
    from titans.cli import serve as serve_cmd

    app.command("serve", help="Serve predictions of the production models over HTTP.")(
        serve_cmd.serve
    )
    from titans.cli import ab as ab_cmd

    app.add_typer(ab_cmd.app, name="ab")
    from titans.cli import keys as keys_cmd

    app.add_typer(keys_cmd.app, name="keys", help="Create API keys for the prediction API.")
    from titans.cli import deploy as deploy_cmd

    app.add_typer(deploy_cmd.app, name="deploy")
    from titans.cli import alerts as alerts_cmd

    app.add_typer(alerts_cmd.app, name="alerts")
    from titans.cli import monitor as monitor_cmd

    app.add_typer(monitor_cmd.app, name="monitor")
    from titans.cli import retrain as retrain_cmd

    app.add_typer(retrain_cmd.app, name="retrain")
    app.command("scheduler")(retrain_cmd.scheduler)
    from titans.cli import security as security_cmd

    app.add_typer(security_cmd.app, name="security")
    from titans.cli import optimize as optimize_cmd

    app.add_typer(optimize_cmd.app, name="optimize")
    from titans.cli import docs as docs_cmd

    app.add_typer(docs_cmd.app, name="docs")


def main() -> None:
    """Entry point: run the app; TitansError becomes one red line and exit 1 or 2."""
    _register_groups()
    debug = "--debug" in sys.argv[1:]
    try:
        # Without standalone mode click returns (not raises) the code of typer.Exit(n).
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except TitansError as exc:
        if debug:
            raise
        _common.err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _common.err_console.print("[red]interrupted[/red]")
        sys.exit(130)
    except SystemExit:
        raise
    except (typer.Exit, typer.Abort) as exc:
        sys.exit(getattr(exc, "exit_code", 1))
    except typer.TyperException as exc:  # usage errors: Typer's own click raises these
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        sys.exit(getattr(exc, "exit_code", 2))
    except Exception as exc:  # a bug: say so in one line unless --debug
        if debug:
            raise
        _common.err_console.print(
            f"[red]error:[/red] unexpected {type(exc).__name__}: {exc} (rerun with --debug "
            "for the traceback and report it)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)
