"""The operator's door to people (`creditflow users add|list`, `creditflow org create --admin`): the first
admin of an organisation, and an admin for an organisation that has none."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import CLI_SECRETS_ENV, START_MS, make_settings, onboard
from creditflow.bootstrap import build
from creditflow.cli.main import cli
from creditflow.kernel.clock import ManualClock
from creditflow.kernel.uscc import make_uscc

PASSWORD = "correct horse battery 9"


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITFLOW_KDF_OPSLIMIT", "1")
    monkeypatch.setenv("CREDITFLOW_KDF_MEMLIMIT_BYTES", str(8 * 1024 * 1024))
    monkeypatch.setenv("CREDITFLOW_WEB__PASSWORD_MEMORY_KIB", str(8 * 1024))
    monkeypatch.setenv("CREDITFLOW_WEB__PASSWORD_TIME_COST", "1")
    for name, value in CLI_SECRETS_ENV.items():  # the commands refuse to open a database without them
        monkeypatch.setenv(name, value)


def test_the_operator_adds_admins_from_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'people.db'}"
    with build(make_settings(url), clock=ManualClock(START_MS)) as app:
        onboard(app, "xcmg")
    runner = CliRunner()
    added = runner.invoke(
        cli,
        ["users", "add", "--org", "xcmg", "--user", "zhao", "--roles", "admin", "--password-stdin", "--db", url],
        input=PASSWORD + "\n",
    )
    assert added.exit_code == 0, added.output
    again = runner.invoke(
        cli,
        ["users", "add", "--org", "steel", "--user", "zhao", "--password-stdin", "--db", url],
        input=PASSWORD + "\n",
    )
    assert again.exit_code == 2 and "user_exists" in again.output
    created = runner.invoke(
        cli,
        [
            "org",
            "create",
            "--id",
            "newco",
            "--name",
            "Newco",
            "--role",
            "supplier",
            "--uscc",
            make_uscc("91320300134781235"),
            "--admin",
            "newco.admin",
            "--password-stdin",
            "--db",
            url,
        ],
        input=PASSWORD + "\n",
    )
    assert created.exit_code == 0 and "first admin newco.admin" in created.output, created.output
    listed = runner.invoke(cli, ["users", "list", "--org", "newco", "--db", url])
    assert listed.exit_code == 0 and "newco.admin" in listed.output and "admin" in listed.output
    with build(make_settings(url), clock=ManualClock(START_MS)) as app:
        assert {p.user_id: sorted(r.value for r in p.roles) for p in app.people.of("xcmg")} == {"zhao": ["admin"]}
        assert app.sessions.sign_in("newco.admin", PASSWORD)[1].org_id == "newco"
