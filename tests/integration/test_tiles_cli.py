"""`creditflow log-key --vkey` and `creditflow log export-tiles DIR`: a static mirror of the log that a
tlog-tiles client checks against the checkpoint, written atomically, safe to re-run, refusing another log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tile_world import grow_to, start_log
from typer.testing import CliRunner

from conftest import CLI_SECRETS_ENV, make_settings
from creditflow.bootstrap import App, build
from creditflow.cli.main import cli
from creditflow.kernel.clock import ManualClock
from creditflow.ledger import merkle, tiles
from creditflow.ledger.note import open_checkpoint, parse_vkey
from creditflow.ledger.tiles import TileHashReader

CLI_ENV = {"CREDITFLOW_KDF_OPSLIMIT": "1", "CREDITFLOW_KDF_MEMLIMIT_BYTES": "8388608", **CLI_SECRETS_ENV}


def run_cli(args: list[str], tmp_path: Path, **extra_env: str) -> Any:
    env = {**CLI_ENV, "CREDITFLOW_CONFIG": str(tmp_path / "absent.toml"), **extra_env}
    return CliRunner().invoke(cli, args, env=env)


def db_url(app: App) -> str:
    return app.engine.url.render_as_string(hide_password=False)


def files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def test_log_key_vkey_prints_the_note_verifier_key_alone(app: App, tmp_path: Path) -> None:
    result = run_cli(["log-key", "--vkey", "--db", db_url(app)], tmp_path)
    assert result.exit_code == 0, result.output
    assert result.stdout == app.checkpoints.vkey + "\n"
    key = parse_vkey(result.stdout.strip())
    assert key.name == app.settings.origin and key.sig_type == 0x01
    plain = run_cli(["log-key", "--db", db_url(app)], tmp_path)  # the old output stays
    assert plain.exit_code == 0 and app.log_signer.public_key.hex() in plain.stdout


def test_export_tiles_writes_a_mirror_a_client_checks(app: App, tmp_path: Path) -> None:
    piece = start_log(app)
    piece = grow_to(app, piece, 300)
    out = tmp_path / "mirror"
    result = run_cli(["log", "export-tiles", str(out), "--db", db_url(app)], tmp_path)
    assert result.exit_code == 0, result.output
    written = files(out)
    assert set(written) == {"checkpoint"} | {ref.path for ref in tiles.tiles_for_size(300)}  # no entries
    opened = open_checkpoint(written["checkpoint"], parse_vkey(app.checkpoints.vkey))
    assert opened.checkpoint.size == 300
    reader = TileHashReader(300, opened.checkpoint.root_hash, lambda p: (out / p).read_bytes())
    assert reader.inclusion_proof(299) == [bytes.fromhex(h) for h in app.proofs.inclusion(299)["audit_path"]]
    assert not list(out.rglob(".*.tmp")), "a temporary file was left behind"

    # re-run after growth: old files kept (and checked), new ones added, the older partial tile stays valid
    grow_to(app, piece, 520)
    again = run_cli(["log", "export-tiles", str(out), "--entries", "--db", db_url(app)], tmp_path)
    assert again.exit_code == 0, again.output
    assert "name parties and amounts" in again.stderr
    assert "already there" in again.stdout
    mirror = files(out)
    assert {ref.path for ref in tiles.tiles_for_size(520) + tiles.bundles_for_size(520)} <= set(mirror)
    assert mirror["tile/0/000"] == written["tile/0/000"] and "tile/0/001.p/44" in mirror
    opened = open_checkpoint(mirror["checkpoint"], parse_vkey(app.checkpoints.vkey))
    reader = TileHashReader(520, opened.checkpoint.root_hash, lambda p: (out / p).read_bytes())
    entries = [e for ref in tiles.bundles_for_size(520) for e in tiles.decode_bundle(mirror[ref.path])]
    assert [merkle.leaf_hash(e) for e in entries] == reader.leaf_hashes(0, 520)
    assert reader.consistency_proof(300) == [bytes.fromhex(h) for h in app.proofs.consistency(300)["proof"]]

    # a third run with nothing new changes nothing
    third = run_cli(["log", "export-tiles", str(out), "--entries", "--db", db_url(app)], tmp_path)
    assert third.exit_code == 0 and files(out) == mirror


def test_export_tiles_refuses_a_corrupt_tile(app: App, tmp_path: Path) -> None:
    start_log(app)
    out = tmp_path / "mirror"
    assert run_cli(["log", "export-tiles", str(out), "--db", db_url(app)], tmp_path).exit_code == 0
    size = app.tiles.checkpoint()[0]
    tile = out / tiles.tile_path(0, 0, size)
    tile.write_bytes(bytes(len(tile.read_bytes())))
    result = run_cli(["log", "export-tiles", str(out), "--db", db_url(app)], tmp_path)
    assert result.exit_code == 1 and "differs from the log's" in result.stderr, result.output


@pytest.mark.parametrize("other_origin", [True, False])
def test_export_tiles_refuses_a_directory_of_another_log(
    app: App, tmp_path: Path, clock: ManualClock, other_origin: bool
) -> None:
    start_log(app)
    out = tmp_path / "mirror"
    assert run_cli(["log", "export-tiles", str(out), "--db", db_url(app)], tmp_path).exit_code == 0
    before = files(out)
    # another deployment: another origin, or (the default origin) the same origin under another log key
    env = {"CREDITFLOW_DEPLOYMENT_NAME": "other-bank"} if other_origin else {}
    with build(make_settings(f"sqlite:///{tmp_path / 'other.db'}"), clock=clock) as other:
        start_log(other)
        result = run_cli(["log", "export-tiles", str(out), "--db", db_url(other)], tmp_path, **env)
    assert result.exit_code == 3, result.output
    assert ("holds the log" if other_origin else "did not sign") in result.stderr
    assert files(out) == before, "the refused export wrote something"
