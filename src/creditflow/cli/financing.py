"""The supply-chain network: penetration by tier, bank exposure, what-if default (`creditflow network ...`)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from creditflow.cli.common import DbOption, JsonOption, console, open_app

network_cli = typer.Typer(
    help="The supply-chain network: penetration by tier, bank exposure, what-if default.", no_args_is_help=True
)


def _minor(value: int) -> str:
    from creditflow.kernel.money import format_minor

    return format_minor(value)


@network_cli.command("penetration")
def network_penetration(
    core: Annotated[str, typer.Argument(help="the core enterprise's org id")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """How far a core enterprise's credit reaches: value, suppliers, financed share, days to cash, by tier."""
    from rich.table import Table

    with open_app(db) as app:
        report = app.network.penetration(core)
    if as_json:
        print(json.dumps(report))
        return
    table = Table("tier", "value reached", "suppliers", "financed", "share", "median days to cash")
    for row in report["tiers"]:
        days = row["median_days_to_cash"]
        table.add_row(
            str(row["tier"]),
            _minor(row["value_reached_minor"]),
            str(row["suppliers_reached"]),
            _minor(row["financed_minor"]),
            f"{row['financed_share']:.0%}",
            "-" if days is None else f"{days:.0f}",
        )
    console.print(f"{core}: {report['certificates']} certificates, {_minor(report['issued_minor'])} issued")
    console.print(table)


@network_cli.command("exposure")
def network_exposure(db: DbOption = None, as_json: JsonOption = False) -> None:
    """What each bank holds of each core enterprise's live certificates."""
    from rich.table import Table

    with open_app(db) as app:
        rows = app.network.exposure()
    if as_json:
        print(json.dumps(rows))
        return
    table = Table("bank", "core enterprise", "exposure")
    for r in rows:
        table.add_row(r["bank"], r["core"], _minor(r["exposure_minor"]))
    console.print(table)


@network_cli.command("what-if-default")
def network_what_if(
    core: Annotated[str, typer.Argument(help="the core enterprise's org id")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """If the core enterprise paid nothing: each holder's loss, before and after recourse."""
    from rich.table import Table

    with open_app(db) as app:
        report = app.network.what_if_default(core)
    if as_json:
        print(json.dumps(report))
        return
    table = Table("holder", "role", "direct loss", "after recourse")
    for h in report["holders"]:
        table.add_row(h["org_id"], h["role"], _minor(h["direct_loss_minor"]), _minor(h["loss_after_recourse_minor"]))
    console.print(f"{core} defaults: {_minor(report['total_at_risk_minor'])} at risk")
    console.print(table)
