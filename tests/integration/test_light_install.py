"""An install without the `credit` extra (no LightGBM, pandas, scikit-learn, optbinning, scorecardpy) still
builds the platform and serves its API: the ML stack is imported only where a model is trained, evaluated or
scored. A fresh interpreter refuses those imports, as if they were not installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROGRAM = """
import importlib.abc, sys, warnings
warnings.simplefilter("ignore")
ML = {"lightgbm", "pandas", "sklearn", "optbinning", "scorecardpy", "scipy"}
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ML:
            raise ImportError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, NotInstalled())
from fastapi.testclient import TestClient
from creditflow.bootstrap import build
from creditflow.config import Settings
from creditflow.http.app import create_app
settings = Settings(
    db_url=sys.argv[1], kdf_opslimit=1, kdf_memlimit_bytes=8 * 1024 * 1024,
    key_passphrase="light-install-test", log_key_passphrase="light-install-log-test",
)
with build(settings) as app:
    print(TestClient(create_app(app)).get("/healthz").status_code)
print(sorted({m.split(".")[0] for m in sys.modules} & ML))
"""


def test_the_api_runs_without_the_credit_extra(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM, f"sqlite:///{tmp_path / 'light.db'}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["200", "[]"]
