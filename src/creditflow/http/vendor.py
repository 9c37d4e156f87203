"""Files the pages take from inside other installed packages, each through one accessor (never a CDN).

If a package moves its file in a new release, the accessor raises naming the package and the path it
looked at, and tests/unit/test_vendored_files.py fails loudly, instead of a page quietly losing its charts.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

PLOTLY_PACKAGE = "plotly"
PLOTLY_JS = ("package_data", "plotly.min.js")


@cache
def plotly_js_path() -> Path:
    """plotly.js as shipped inside the installed ``plotly`` wheel (found without importing plotly)."""
    spec = importlib.util.find_spec(PLOTLY_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the charts need the {PLOTLY_PACKAGE} package installed (pip install plotly)")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*PLOTLY_JS)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {PLOTLY_PACKAGE} package")
    return path
