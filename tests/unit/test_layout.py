"""The layout's rules that import-linter cannot state: where SQLAlchemy may be imported at all.

"SQL lives only in each context's store.py/tables.py": a module outside the store, table and engine modules
(and the Alembic migrations) that imports SQLAlchemy, even for a type or an exception, fails here with its name.
The contracts between packages are in pyproject ([tool.importlinter]) and run by `make lint` in CI.
"""

from __future__ import annotations

import ast
from pathlib import Path

import creditflow

ROOT = Path(creditflow.__file__).resolve().parent
ALLOWED_NAMES = {"store.py", "tables.py"}
ALLOWED_FILES = {"kernel/engine.py"}
ALLOWED_DIRS = {"migrations"}


def sqlalchemy_importers() -> list[str]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if path.name in ALLOWED_NAMES or rel in ALLOWED_FILES or rel.split("/")[0] in ALLOWED_DIRS:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            if any(n == "sqlalchemy" or n.startswith("sqlalchemy.") for n in names):
                found.append(f"{rel}:{node.lineno}")
    return found


def test_only_store_table_and_engine_modules_import_sqlalchemy() -> None:
    assert sqlalchemy_importers() == []


def test_every_context_has_its_store_and_tables() -> None:
    for context in ("ledger", "trade", "financing", "collateral", "credit", "identity"):
        assert (ROOT / context / "store.py").is_file(), context
        assert (ROOT / context / "tables.py").is_file(), context
