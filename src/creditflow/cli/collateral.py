"""``creditflow iot``, ``creditflow simulate iot`` and ``creditflow bench iot``: IoT-monitored collateral.

Exit codes: 0 success; 2 a rule refused the request (its code printed); 3 bad usage or configuration
(e.g. no broker at the URL).

Also runnable alone (until registered in `creditflow.cli.main`): ``python -m creditflow.cli.collateral ingest ...``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from creditflow.collateral.model import AssetKind, DeviceKind
from creditflow.kernel.errors import DomainError

if TYPE_CHECKING:
    from creditflow.bootstrap import App
    from creditflow.collateral.system import IotSystem

EXIT_REFUSED = 2
EXIT_USAGE = 3

iot_cli = typer.Typer(
    help="IoT-monitored collateral: assets, devices, prices, loans, alarms; run an MQTT ingest worker.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
simulate_cli = typer.Typer(help="Simulators that drive the platform with realistic data.", no_args_is_help=True)

DbOption = Annotated[
    str | None, typer.Option("--db", help="Database URL (default: $CREDITFLOW_DB_URL or sqlite:///creditflow.db)")
]
MqttOption = Annotated[
    str | None, typer.Option("--mqtt", help="Broker URL, mqtt://host:1883 (default: $CREDITFLOW_MQTT_URL)")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 140, highlight=False)


def _open(db: str | None) -> App:
    from creditflow.cli.common import open_app

    app: App = open_app(db)  # refuses (exit 3) without the passphrases; see creditflow.cli.common
    return app


def _open_demo(url: str) -> App:
    """A simulation's database is a demo's: throwaway passphrases of its own (see `creditflow.bootstrap.build_demo`)."""
    from creditflow.bootstrap import build_demo
    from creditflow.cli.common import EXIT_CONFIG
    from creditflow.ledger.custody import StartupRefused

    try:
        return build_demo(url)
    except StartupRefused as exc:
        _console(True).print(f"[red]error[/red] [bold]{exc.code}[/bold]: {exc}")
        raise typer.Exit(EXIT_CONFIG) from None


def _iot(app: App) -> IotSystem:
    from creditflow.collateral.settings import IotSettings
    from creditflow.collateral.system import IotSystem

    existing = getattr(app, "iot", None)
    if isinstance(existing, IotSystem):
        return existing
    return IotSystem(app.engine, IotSettings.from_settings(app.settings), app.clock, custody=app.custody)


def _fail(error: DomainError) -> None:
    _console(True).print(f"[red]error[/red] [bold]{error.code}[/bold]: {error.message}")
    raise typer.Exit(EXIT_REFUSED)


def _run(db: str | None, action: Any) -> Any:
    with _open(db) as app:
        iot = _iot(app)
        try:
            return action(iot)
        except DomainError as exc:
            _fail(exc)
        finally:
            iot.close()


def _mqtt_url(mqtt: str | None) -> str:
    url = mqtt or os.environ.get("CREDITFLOW_MQTT_URL")
    if not url:
        _console(True).print("[red]error[/red]: give --mqtt or set CREDITFLOW_MQTT_URL")
        raise typer.Exit(EXIT_USAGE)
    return url


@iot_cli.command("ingest")
def ingest(
    db: DbOption = None,
    mqtt: MqttOption = None,
    prefix: Annotated[str | None, typer.Option("--prefix", help="topic prefix (default: settings)")] = None,
    group: Annotated[str | None, typer.Option("--group", help="shared-subscription group (default: settings)")] = None,
    connections: Annotated[int, typer.Option("--connections", min=1, max=64)] = 2,
    seconds: Annotated[float, typer.Option("--seconds", help="stop after this long (0: until interrupted)")] = 0.0,
) -> None:
    """Run an ingest worker: subscribe through the shared subscription and feed the pipeline."""
    from creditflow.collateral.ingest import settle_heap
    from creditflow.collateral.mqtt import MqttIngest

    url = _mqtt_url(mqtt)
    with _open(db) as app:
        iot = _iot(app)
        s = iot.settings
        worker = MqttIngest(
            url,
            iot.pipeline.offer,
            prefix=prefix or s.mqtt_topic_prefix,
            group=group or s.mqtt_share_group,
            receive_max=s.mqtt_receive_max,
            keepalive_s=s.mqtt_keepalive_s,
            connections=connections,
        )
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            worker.start()
        except (ConnectionError, OSError) as exc:
            _console(True).print(f"[red]error[/red]: broker at {url}: {exc}")
            iot.close()
            raise typer.Exit(EXIT_USAGE) from exc
        settle_heap()
        print("ready", flush=True)
        try:
            stop.wait(seconds if seconds > 0 else None)
        except KeyboardInterrupt:
            pass
        finally:
            worker.stop()
            iot.pipeline.drain()
            iot.close()
        m = iot.pipeline.metrics
        print(
            json.dumps({"received": m.received, "accepted": m.accepted, "rejected": m.rejected, "alarms": m.alarms}),
            flush=True,
        )


@iot_cli.command("asset-add")
def asset_add(
    asset_id: Annotated[str, typer.Argument()],
    owner: Annotated[str, typer.Option("--owner")],
    kind: Annotated[AssetKind, typer.Option("--kind")],
    name: Annotated[str, typer.Option("--name")],
    commodity: Annotated[str | None, typer.Option("--commodity")] = None,
    quantity_kg: Annotated[float | None, typer.Option("--quantity-kg")] = None,
    receipt_no: Annotated[str | None, typer.Option("--receipt")] = None,
    serial_no: Annotated[str | None, typer.Option("--serial")] = None,
    geofence: Annotated[str | None, typer.Option("--geofence", help="JSON [[lat, lon], ...]")] = None,
    appraised_minor: Annotated[int | None, typer.Option("--appraised-minor")] = None,
    crop: Annotated[str | None, typer.Option("--crop")] = None,
    area_m2: Annotated[int | None, typer.Option("--area-m2")] = None,
    expected_yield_kg: Annotated[float | None, typer.Option("--expected-yield-kg")] = None,
    db: DbOption = None,
) -> None:
    """Register a collateral asset (warehouse lot, equipment or crop field)."""
    from creditflow.collateral.assets import AssetSpec

    spec = AssetSpec(
        asset_id,
        owner,
        kind,
        name,
        commodity=commodity,
        quantity_kg=quantity_kg,
        receipt_no=receipt_no,
        serial_no=serial_no,
        geofence=json.loads(geofence) if geofence else None,
        appraised_minor=appraised_minor,
        crop=crop,
        area_m2=area_m2,
        expected_yield_kg=expected_yield_kg,
    )
    print(json.dumps(_run(db, lambda iot: iot.collateral.register_asset(spec))))


@iot_cli.command("device-add")
def device_add(
    device_id: Annotated[str, typer.Argument()],
    asset_id: Annotated[str, typer.Option("--asset")],
    kind: Annotated[DeviceKind, typer.Option("--kind")],
    db: DbOption = None,
) -> None:
    """Bind a device to an asset and print its secret (shown once)."""
    print(_run(db, lambda iot: iot.collateral.register_device(device_id, asset_id, kind)))


@iot_cli.command("device-rotate")
def device_rotate(device_id: Annotated[str, typer.Argument()], db: DbOption = None) -> None:
    """Give a device a new secret (printed once); the old one stops working at once."""
    print(_run(db, lambda iot: iot.collateral.rotate_secret(device_id)))


@iot_cli.command("device-retire")
def device_retire(device_id: Annotated[str, typer.Argument()], db: DbOption = None) -> None:
    """Retire a device: its messages are rejected as unknown from now on."""
    _run(db, lambda iot: iot.collateral.retire_device(device_id))


BookOption = Annotated[
    str | None, typer.Option("--book", help="a bank's own price book (default: the operator's feed)")
]


@iot_cli.command("price-set")
def price_set(
    commodity: Annotated[str, typer.Argument()],
    price_minor_per_kg: Annotated[int, typer.Argument(help="fen per kg")],
    book: BookOption = None,
    db: DbOption = None,
) -> None:
    """Enter a commodity price in the operator's feed, or with --book in that bank's own price book (it
    values only that bank's loans); the assets it values are revalued."""
    events = _run(
        db, lambda iot: iot.collateral.set_price(commodity, price_minor_per_kg, source=book or "manual", book=book)
    )
    for e in events:
        print(json.dumps(e.to_json()))


@iot_cli.command("price-import")
def price_import(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False)], book: BookOption = None, db: DbOption = None
) -> None:
    """Import prices from CSV (commodity,date,price_minor_per_kg) into the feed or a bank's book; history is kept."""
    n = _run(db, lambda iot: iot.collateral.import_prices_csv(path.read_text(encoding="utf-8"), book=book))
    print(f"{n} prices imported")


@iot_cli.command("loan-create")
def loan_create(
    loan_id: Annotated[str, typer.Argument()],
    borrower: Annotated[str, typer.Option("--borrower")],
    lender: Annotated[str, typer.Option("--lender")],
    outstanding_minor: Annotated[int, typer.Option("--outstanding-minor")],
    bands: Annotated[str, typer.Option("--bands", help="commodity whose LTV bands apply")] = "default",
    db: DbOption = None,
) -> None:
    """Propose a loan secured by collateral (signed by the lender); it binds once the borrower accepts it."""
    _run(db, lambda iot: iot.collateral.create_loan(loan_id, borrower, lender, outstanding_minor, bands))


@iot_cli.command("loan-accept")
def loan_accept(loan_id: Annotated[str, typer.Argument()], db: DbOption = None) -> None:
    """The borrower accepts a proposed loan (signed with the borrower's held key)."""
    _run(db, lambda iot: iot.collateral.accept_loan(loan_id, iot.collateral.loan(loan_id)["borrower"]))


@iot_cli.command("loan-refuse")
def loan_refuse(loan_id: Annotated[str, typer.Argument()], db: DbOption = None) -> None:
    """The borrower refuses a proposed loan (it stays on record as refused)."""
    _run(db, lambda iot: iot.collateral.refuse_loan(loan_id, iot.collateral.loan(loan_id)["borrower"]))


@iot_cli.command("pledge")
def pledge(
    asset_id: Annotated[str, typer.Argument()],
    loan_id: Annotated[str, typer.Argument()],
    haircut_bps: Annotated[int, typer.Option("--haircut-bps")] = 1000,
    db: DbOption = None,
) -> None:
    """The lender proposes pledging an asset to its loan; it binds once the asset's owner accepts it."""
    _run(
        db,
        lambda iot: iot.collateral.propose_pledge(
            loan_id, asset_id, haircut_bps, iot.collateral.loan(loan_id)["lender"]
        ),
    )


@iot_cli.command("pledge-accept")
def pledge_accept(
    asset_id: Annotated[str, typer.Argument()], loan_id: Annotated[str, typer.Argument()], db: DbOption = None
) -> None:
    """The asset's owner (the borrower) accepts a proposed pledge: the asset now secures the loan."""
    _run(db, lambda iot: iot.collateral.accept_pledge(loan_id, asset_id, iot.collateral.loan(loan_id)["borrower"]))


@iot_cli.command("pledge-refuse")
def pledge_refuse(
    asset_id: Annotated[str, typer.Argument()], loan_id: Annotated[str, typer.Argument()], db: DbOption = None
) -> None:
    """The asset's owner refuses a proposed pledge (it stays on record as refused)."""
    _run(db, lambda iot: iot.collateral.refuse_pledge(loan_id, asset_id, iot.collateral.loan(loan_id)["borrower"]))


@iot_cli.command("repay")
def repay(
    loan_id: Annotated[str, typer.Argument()], amount_minor: Annotated[int, typer.Argument()], db: DbOption = None
) -> None:
    """Record a repayment; the LTV is recomputed (a margin call may be cured)."""
    _run(db, lambda iot: iot.collateral.repay(loan_id, amount_minor))


@iot_cli.command("release")
def release(
    asset_id: Annotated[str, typer.Argument()],
    quantity_kg: Annotated[float, typer.Argument()],
    approved_by: Annotated[str, typer.Option("--by")],
    db: DbOption = None,
) -> None:
    """Approve releasing goods from a warehouse lot: the matching weight drop raises nothing."""
    print(json.dumps(_run(db, lambda iot: iot.collateral.approve_release(asset_id, quantity_kg, approved_by))))


@iot_cli.command("loan")
def loan(loan_id: Annotated[str, typer.Argument()], db: DbOption = None) -> None:
    """Show a loan: collateral value, LTV, band and its band history."""
    print(json.dumps(_run(db, lambda iot: iot.collateral.loan(loan_id)), indent=2))


@iot_cli.command("alarms")
def alarms(
    asset_id: Annotated[str | None, typer.Option("--asset")] = None,
    active: Annotated[bool, typer.Option("--active")] = False,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """List alarms, newest first."""
    items = _run(db, lambda iot: iot.collateral.alarms(asset_id=asset_id, active_only=active))
    if as_json:
        print(json.dumps(items))
        return
    table = Table("alarm", "asset", "type", "severity", "status", "ack")
    for a in items:
        table.add_row(a["alarm_id"][:8], a["asset_id"], a["alarm_type"], a["severity"], a["status"], a["ack_by"] or "-")
    _console().print(table)


@iot_cli.command("ack")
def ack(
    alarm_id: Annotated[str, typer.Argument()], user: Annotated[str, typer.Option("--user")], db: DbOption = None
) -> None:
    """Acknowledge an alarm (who and when are recorded)."""
    _run(db, lambda iot: iot.collateral.acknowledge(alarm_id, user))


@simulate_cli.command("iot")
def simulate_iot(
    db: Annotated[
        str | None, typer.Option("--db", help="Keep the database at this URL (default: a temporary SQLite file)")
    ] = None,
    mqtt: MqttOption = None,
    minutes: Annotated[int, typer.Option("--minutes", min=60, max=24 * 60)] = 8 * 60,
) -> None:
    """A night at a steel warehouse, an excavator site and a tea garden, with scripted incidents."""
    import tempfile

    from creditflow.tools.simulate.iot import run_iot_demo

    with tempfile.TemporaryDirectory() as tmp:
        url = db or f"sqlite:///{Path(tmp) / 'simulate.db'}"
        with _open_demo(url) as app:
            run_iot_demo(_console(), app, mqtt_url=mqtt or os.environ.get("CREDITFLOW_MQTT_URL"), minutes=minutes)


def bench_iot(
    mqtt: MqttOption = None,
    pg: Annotated[
        str | None, typer.Option("--pg", help="PostgreSQL URL (default: $CREDITFLOW_TEST_PG_URL; skipped if unset)")
    ] = None,
    messages: Annotated[int, typer.Option("--messages", help="messages per ramp step")] = 15_000,
    as_json: JsonOption = False,
) -> None:
    """Telemetry through the real broker, QoS 1, rules and storage on: sustained rate, loss, alarm latency,
    against a bare subscriber's bound measured in the same run."""
    from creditflow.tools.bench.iot import run_iot_bench

    url = _mqtt_url(mqtt)
    result = run_iot_bench(url, pg_url=pg or os.environ.get("CREDITFLOW_TEST_PG_URL"), messages=messages)
    print(json.dumps(result, indent=None if as_json else 2))


if __name__ == "__main__":
    iot_cli()
