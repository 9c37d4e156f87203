"""An import-linter contract type: no module imports a private (``_name``) name or module from another package.

A leading underscore says "this package's business". Reaching for one across a package boundary (a web
page importing an API module's ``_may_ask``, a service calling another context's ``_helper``) couples the
two packages to a detail the owner may change at will; the fix is to make the thing public where it
lives, or to move it. import-linter's built-in contracts see modules, not names, so this one reads each
module's source (``ast``): ``from creditflow.x.y import _z`` and ``import creditflow.x._y`` are caught,
including imports inside functions.

Configured in pyproject (``[[tool.importlinter.contracts]]`` with ``type = "private_imports"``).
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _package_of(module: str, is_package: bool) -> str:
    return module if is_package else module.rpartition(".")[0]


class PrivateImportsContract(Contract):
    """Options: ``source_package`` (the root to scan, e.g. creditflow); ``ignore_imports`` (optional list of
    ``importer -> imported:name`` strings that are allowed, each a documented exception)."""

    type_name = "private_imports"

    source_package = fields.StringField()
    ignore_imports = fields.ListField(subfield=fields.StringField(), required=False)

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        root = str(self.source_package)
        allowed = set(self.ignore_imports or [])  # type: ignore[arg-type]
        violations: list[str] = []
        for module in sorted(m for m in graph.modules if m == root or m.startswith(root + ".")):
            spec = importlib.util.find_spec(module)
            if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
                continue
            is_package = Path(spec.origin).name == "__init__.py"
            here = _package_of(module, is_package)
            tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"), filename=spec.origin)
            for node in ast.walk(tree):
                for target, name in self._imports(node, module, is_package):
                    if not (target == root or target.startswith(root + ".")):
                        continue
                    if name is not None and f"{target}.{name}" in graph.modules:
                        imported, owner = f"{target}.{name}", target  # `from package import module`
                    elif name is not None:
                        imported, owner = target, _package_of(target, bool(graph.find_children(target)))
                        if _is_private(name):
                            imported = f"{target}.{name}"
                    else:
                        imported, owner = target, _package_of(target, bool(graph.find_children(target)))
                    if owner == here or not any(_is_private(part) for part in imported.split(".")):
                        continue
                    line = f"{module} -> {imported}"
                    if line not in allowed:
                        violations.append(f"{line} (line {node.lineno})")
        return ContractCheck(kept=not violations, metadata={"violations": violations})

    @staticmethod
    def _imports(node: ast.AST, module: str, is_package: bool) -> list[tuple[str, str | None]]:
        if isinstance(node, ast.Import):
            return [(alias.name, None) for alias in node.names]
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                if not is_package:
                    parts = parts[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            return [(base, alias.name) for alias in node.names]
        return []

    def render_broken_contract(self, check: ContractCheck) -> None:
        for line in check.metadata["violations"]:
            output.print_error(f"private name imported across packages: {line}", bold=False)
            output.new_line()
