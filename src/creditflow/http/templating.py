"""Jinja2 for the pages: autoescaped templates shipped in the package, and the filters that show
money, times and ids the way people read them."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


def yuan(minor: int | None) -> str:
    """Integer fen as ``1,234,567.89`` (exact: no float on the way)."""
    if minor is None:
        return "-"
    sign = "-" if minor < 0 else ""
    whole, fen = divmod(abs(int(minor)), 100)
    return f"{sign}{whole:,}.{fen:02d}"


def when(ts_ms: int | None) -> str:
    """Milliseconds since the epoch as a UTC date and time, to the minute."""
    if ts_ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ts_ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M")


def pct_bps(bps: int | None) -> str:
    return "-" if bps is None else f"{bps / 100:.2f} %"


def json_script(value: Any, element_id: str) -> Markup:
    """Data for a page's script as ``<script type="application/json">``: not executed (the CSP allows no
    inline script), read with JSON.parse. ``<``, ``>`` and ``&`` are escaped so the data cannot close the
    element."""
    text = json.dumps(value, separators=(",", ":"), default=str)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(f'<script type="application/json" id="{element_id}">{text}</script>')


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["yuan"] = yuan
    env.filters["when"] = when
    env.filters["pct_bps"] = pct_bps
    env.globals["json_script"] = json_script
    return env
