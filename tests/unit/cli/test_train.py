"""``vidpipe train`` and ``vidpipe models`` as a user sees them (help, options)."""

from __future__ import annotations

from typer.testing import CliRunner

from vidpipe_cli.main import app


def test_cli_when_help_requested_lists_commands() -> None:
    runner = CliRunner()

    submit = runner.invoke(app, ["train", "submit", "--help"])
    promote = runner.invoke(app, ["models", "promote", "--help"])

    assert submit.exit_code == 0 and "--eval-dataset" in submit.output
    assert "ssdlite" in submit.output and "fasterrcnn" in submit.output
    assert promote.exit_code == 0 and "--force" in promote.output
