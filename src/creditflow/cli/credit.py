"""``creditflow credit``, ``creditflow simulate credit`` and ``creditflow bench credit``.

Exit codes: 0 success; 2 a rule refused the request (a `DomainError`, its code printed); 3 the file or
its columns cannot be used (nothing imported or evaluated); 4 an import had bad rows (nothing imported,
every bad row listed).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from creditflow.config import Settings
from creditflow.kernel.errors import DomainError
from creditflow.kernel.money import format_minor

if TYPE_CHECKING:
    from creditflow.bootstrap import App
    from creditflow.credit.service import CreditService

EXIT_REFUSED, EXIT_FILE_ERROR, EXIT_REJECTED = 2, 3, 4

credit_cli = typer.Typer(
    help="Data credit: evaluate models on your data, train, import data, decide.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
simulate_cli = typer.Typer(
    help="Synthetic worlds for demos, tests and benchmarks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

DbOption = Annotated[
    str | None, typer.Option("--db", help="Database URL (default: $CREDITFLOW_DB_URL or sqlite:///creditflow.db)")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 140, highlight=False)


def _open(db: str | None) -> App:
    from creditflow.cli.common import open_app

    app: App = open_app(db)  # refuses (exit 3) without the passphrases; see creditflow.cli.common
    return app


def credit_service_for(app: App) -> CreditService:
    """The composition root's credit service (every command goes through it, as the routes do)."""
    return app.credit


def _refused(error: DomainError) -> typer.Exit:
    _console(stderr=True).print(f"[red]error[/red] [bold]{error.code}[/bold]: {error.message}")
    return typer.Exit(EXIT_REFUSED)


@credit_cli.command("evaluate")
def evaluate_command(
    csv: Annotated[Path, typer.Option("--csv", help="Any CSV with a binary target", dir_okay=False)],
    target: Annotated[str, typer.Option("--target", help="The target column")],
    positive: Annotated[
        str | None, typer.Option("--positive", help="The label of the bad outcome (if not 0/1)")
    ] = None,
    time_col: Annotated[str | None, typer.Option("--time-col", help="Validate out-of-time on this column")] = None,
    monotone: Annotated[
        list[str] | None, typer.Option("--monotone", help="COLUMN=+1 or COLUMN=-1 (repeatable)")
    ] = None,
    folds: Annotated[int | None, typer.Option("--folds", min=2, max=20, help="k of k-fold (default 5)")] = None,
    baseline: Annotated[bool, typer.Option("--baseline", help="Also run optbinning's default scorecard")] = False,
    as_json: JsonOption = False,
) -> None:
    """Champion (LightGBM) and challenger (WoE scorecard) side by side: AUC, KS, Gini, calibration."""
    from creditflow.credit.evaluate import EvaluateError, evaluate, monotone_from_option, prepare, read_csv
    from creditflow.credit.settings import from_settings

    err = _console(stderr=True)
    try:
        data = csv.read_bytes()
    except OSError as exc:
        err.print(f"[red]cannot read {csv}[/red]: {exc.strerror or exc}")
        raise typer.Exit(EXIT_FILE_ERROR) from exc
    settings = from_settings(Settings())
    try:
        frame = read_csv(data, settings)
        prep = prepare(frame, target, positive, time_col, settings.credit_evaluate_min_class_rows)
        result = evaluate(
            prep, settings=settings, monotone=monotone_from_option(monotone or []), with_baseline=baseline, folds=folds
        )
    except EvaluateError as exc:
        err.print(f"[red bold]cannot evaluate[/red bold] ({exc.field}): {exc.message}")
        raise typer.Exit(EXIT_FILE_ERROR) from exc
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
        return
    out = _console()
    out.print(
        f"{csv.name}: {result['rows']} rows, bad rate {result['bad_rate']:.1%}, {result['features']} features "
        f"({len(result['categorical'])} text); validation: {result['scheme']}"
    )
    if result["dropped"]:
        out.print(f"dropped (empty or id-like): {', '.join(result['dropped'])}")
    models = [m for m in ("champion", "challenger", "baseline") if m in result]
    table = Table("measure", *models)
    for key in ("auc", "gini", "ks", "brier", "calibration_error", "mean_pd", "train_seconds"):
        table.add_row(
            key, *(f"{result[m][key]:.4f}" if key != "train_seconds" else f"{result[m][key]:.1f}" for m in models)
        )
    out.print(table)
    cal = Table("decile", *(f"{m} predicted / observed" for m in models), title="calibration")
    for i in range(len(result["champion"]["calibration"])):
        cal.add_row(
            str(i + 1),
            *(
                f"{result[m]['calibration'][i]['predicted']:.3f} / {result[m]['calibration'][i]['observed']:.3f}"
                for m in models
            ),
        )
    out.print(cal)


@credit_cli.command("train")
def train_command(
    applications: Annotated[
        Path | None,
        typer.Option(
            "--applications",
            help="Labelled past applications (CSV/JSON: org_id, applied_on, the target) of businesses whose "
            "data is imported: train on that data instead of a simulated world",
            dir_okay=False,
        ),
    ] = None,
    target: Annotated[
        str, typer.Option("--target", help="The label column of --applications: 1 went bad, 0 did not")
    ] = "bad_within_12m",
    firms: Annotated[int, typer.Option("--firms", min=100, help="Simulated firms to train on")] = 4000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the simulated world")] = 7,
    no_challenger: Annotated[bool, typer.Option("--no-challenger", help="Train and store the champion alone")] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Validate out of time, then train and store the champion and the challenger as the active pair.

    Without --applications: on a simulated world (--firms, --seed). With it: on the data imported into
    the database (`credit import`), each application's features computed as of its own day."""
    with _open(db) as app:
        service = credit_service_for(app)
        if applications is None:
            from creditflow.credit.simulate import simulate

            trained = service.train_on_world(simulate(firms, seed), with_challenger=not no_challenger)
            doc = trained.to_json()
        else:
            err = _console(stderr=True)
            try:
                data = applications.read_bytes()
            except OSError as exc:
                err.print(f"[red]cannot read {applications}[/red]: {exc.strerror or exc}")
                raise typer.Exit(EXIT_FILE_ERROR) from exc
            report = service.train_on_applications(
                data, applications.name, target=target, with_challenger=not no_challenger
            )
            doc = report.to_json()
            if not report.ok:
                code = EXIT_REJECTED if report.errors else EXIT_FILE_ERROR
                if as_json:
                    print(json.dumps(doc, ensure_ascii=False))
                    raise typer.Exit(code)
                if report.file_error:
                    err.print(f"[red bold]cannot train[/red bold]: {report.file_error}; nothing was stored")
                else:
                    table = Table(
                        "row", "field", "reason", title=f"{len(report.errors)} bad row(s): nothing was trained"
                    )
                    for e in report.errors:
                        table.add_row(str(e.row), e.field, e.message)
                    _console().print(table)
                raise typer.Exit(code)
    if as_json:
        print(json.dumps(doc, ensure_ascii=False))
        return
    print_training(_console(), doc)


def print_training(out: Console, doc: dict[str, Any]) -> None:
    out.print(f"trained on {doc['trained_on']}: {doc['rows']} rows, bad rate {doc['bad_rate']:.1%}")
    for kind in ("champion", "challenger"):
        a = doc.get(kind)
        if a:
            out.print(
                f"stored and activated {kind} [bold]{a['version']}[/bold] (data {a['data_hash'][:12]}, "
                f"features {a['feature_hash'][:12]}, params {a['params_hash'][:12]})"
            )
    validation = doc["validation"]
    if "champion" not in validation:
        out.print(f"validation: {validation.get('reason') or validation['scheme']}")
        return
    models = [m for m in ("champion", "challenger") if m in validation]
    out.print(
        f"out-of-time validation: fitted on the {validation['train_rows']} applications before "
        f"{validation['cutoff']}, judged on the {validation['test_rows']} from then on"
    )
    table = Table("measure", *models)
    for key in ("auc", "gini", "ks", "brier", "calibration_error", "mean_pd", "bad_rate"):
        table.add_row(key, *(f"{validation[m][key]:.4f}" for m in models))
    out.print(table)


@credit_cli.command("models")
def models_command(db: DbOption = None, as_json: JsonOption = False) -> None:
    """The stored model artefacts: kind, version, whether active, what they were trained on."""
    with _open(db) as app:
        models = credit_service_for(app).models()
    if as_json:
        print(json.dumps(models, ensure_ascii=False))
        return
    table = Table("kind", "version", "active", "trained on", "rows", "out-of-time AUC")
    for m in models:
        metrics = m["metrics"]
        validation = metrics.get("validation", {})
        auc = validation.get(m["kind"], {}).get("auc")
        table.add_row(
            m["kind"],
            m["version"],
            "yes" if m["active"] else "",
            str(metrics.get("trained_on", "")),
            str(metrics.get("rows", "")),
            "" if auc is None else f"{auc:.4f}",
        )
    _console().print(table)


@credit_cli.command("label")
def label_command(
    decision_id: Annotated[str, typer.Argument(help="A recorded decision")],
    bad: Annotated[bool, typer.Option("--bad/--good", help="Did the loan go bad?")],
    db: DbOption = None,
) -> None:
    """Record the outcome of a decided application (for AUC/KS in `credit monitor`)."""
    with _open(db) as app:
        try:
            credit_service_for(app).label(decision_id, bad)
        except DomainError as exc:
            raise _refused(exc) from exc
    _console().print(f"decision {decision_id} labelled {'bad' if bad else 'good'}")


@credit_cli.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="CSV or JSON file of one source", dir_okay=False)],
    source: Annotated[
        str,
        typer.Option("--source", help="firms, platform, store, logistics, utilities, social_insurance, tax, sentiment"),
    ],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Import one data source; a file with any bad row imports nothing and lists every bad row."""
    err = _console(stderr=True)
    try:
        data = file.read_bytes()
    except OSError as exc:
        err.print(f"[red]cannot read {file}[/red]: {exc.strerror or exc}")
        raise typer.Exit(EXIT_FILE_ERROR) from exc
    with _open(db) as app:
        try:
            report = credit_service_for(app).import_file(source, data, file.name)
        except DomainError as exc:
            raise _refused(exc) from exc
    code = EXIT_OK if report.ok else (EXIT_FILE_ERROR if report.file_error else EXIT_REJECTED)
    if as_json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
        raise typer.Exit(code)
    if report.file_error:
        err.print(f"[red bold]file refused[/red bold]: {report.file_error}; nothing was imported")
    elif report.errors:
        table = Table("row", "field", "reason", title=f"{len(report.errors)} bad row(s): nothing was imported")
        for e in report.errors:
            table.add_row(str(e.row), e.field, e.message)
        _console().print(table)
    else:
        _console().print(
            f"{file.name}: {report.rows} rows, [green]{report.imported} imported[/green], {report.unchanged} already there"
        )
    raise typer.Exit(code)


EXIT_OK = 0


@credit_cli.command("decide")
def decide_command(
    org_id: Annotated[str, typer.Argument(help="The applicant")],
    amount: Annotated[int, typer.Option("--amount-minor", help="Requested amount in fen")],
    product: Annotated[str, typer.Option("--product", help="pure_credit or certificate_financing")] = "pure_credit",
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Decide an application now: outcome, PD, limit, rate and reasons; the decision is recorded."""
    with _open(db) as app:
        try:
            record = credit_service_for(app).decide(org_id, amount, product)
        except DomainError as exc:
            raise _refused(exc) from exc
    if as_json:
        print(json.dumps(record.to_json(), ensure_ascii=False))
        return
    print_decision(_console(), record.to_json())


def print_decision(out: Console, doc: dict[str, object]) -> None:
    colour = {"approve": "green", "refer": "yellow", "decline": "red"}[str(doc["outcome"])]
    pd = doc.get("pd")
    line = f"[{colour} bold]{str(doc['outcome']).upper()}[/] in {doc['decision_ms']} ms"
    if isinstance(pd, float):
        line += f"; PD {pd:.2%}, score {doc['score']}"
    if doc["outcome"] == "approve":
        line += f"; granted {format_minor(int(doc['granted_minor']))} (limit {format_minor(int(doc['limit_minor']))}) at {int(doc['rate_bps']) / 100:.2f} % a year"  # type: ignore[call-overload]
    out.print(line)
    for reason in doc["reasons"]:  # type: ignore[attr-defined]
        out.print(f"  • {reason['message']}")
    out.print(
        f"  model {doc['model_version']}, features {str(doc['feature_hash'])[:16]}…, policy {doc['policy_version']}"
    )


@credit_cli.command("monitor")
def monitor_command(db: DbOption = None, as_json: JsonOption = False) -> None:
    """PSI per feature and on the score (fixed bins, alarm above the threshold); AUC/KS on labelled outcomes."""
    with _open(db) as app:
        try:
            report = credit_service_for(app).monitor()
        except DomainError as exc:
            raise _refused(exc) from exc
    if as_json:
        print(json.dumps(report))
        return
    table = Table("feature", "PSI", "alarm")
    for row in report["features"]:
        table.add_row(row["feature"], f"{row['psi']:.4f}", "[red]ALARM[/red]" if row["alarm"] else "")
    _console().print(table)
    _console().print(f"alarms: {', '.join(report['alarms']) or 'none'}; outcomes: {report['outcomes']}")
    ch = report.get("challenger")
    if ch:
        out = _console()
        agreement = "n/a" if ch["agreement"] is None else f"{ch['agreement']:.1%}"
        out.print(
            f"challenger {ch['version']} shadow-scored {ch['decisions']} decision(s); "
            f"{ch['model_decided']} decided by the models, same outcome in {agreement}"
        )
        cross = Table("champion (rows) / challenger", *ch["outcomes"])
        for outcome, row in ch["outcomes"].items():
            cross.add_row(outcome, *(str(v) for v in row.values()))
        out.print(cross)
        labelled = ch["labelled"]
        out.print(f"on labelled outcomes: champion {labelled['champion']}; challenger {labelled['challenger']}")


@simulate_cli.command("credit")
def simulate_credit(
    firms: Annotated[int, typer.Option("--firms", min=1, max=1_000_000)] = 1000,
    seed: Annotated[int, typer.Option("--seed")] = 7,
    out: Annotated[Path | None, typer.Option("--out", help="Write one CSV per source here (importable)")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """A synthetic world of small businesses (see docs/CREDIT_MODEL.md): summary, files, or a database."""
    import csv as csvmod

    from creditflow.credit.simulate import simulate
    from creditflow.credit.sources import SOURCES, observations_to_rows

    world = simulate(firms, seed)
    summary: dict[str, Any] = {
        "firms": world.n,
        "seed": seed,
        "bad_rate": round(float(world.bad.mean()), 4),
        "thin_files": int(((world.apply_month - world.hist_start) < 9).sum()),
        "court_judgments": sum(f.court_judgment for f in world.firms),
        "blacklisted": sum(f.blacklisted for f in world.firms),
    }
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        rows = observations_to_rows(
            o for i in range(world.n) for o in world.observations(i, until_month=int(world.apply_month[i]))
        )
        for name, items in rows.items():
            src = SOURCES[name]
            header = ["org_id", "published_on" if name == "sentiment" else "period", "available_on"] + (
                ["text"] if name == "sentiment" else [m.name for m in src.metrics]
            )
            with (out / f"{name}.csv").open("w", newline="", encoding="utf-8") as fh:
                dict_writer = csvmod.DictWriter(fh, header)
                dict_writer.writeheader()
                dict_writer.writerows(items)
        with (out / "firms.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csvmod.writer(fh)
            writer.writerow(["org_id", "name", "founded_on", "industry", "blacklisted", "court_judgment"])
            for f in world.firms:
                writer.writerow(
                    [f.org_id, f.name, f.founded_on.isoformat(), f.industry, f.blacklisted, f.court_judgment]
                )
        with (out / "applications.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csvmod.writer(fh)
            writer.writerow(["org_id", "applied_on", "requested_minor", "bad_within_12m"])
            for i, f in enumerate(world.firms):
                writer.writerow(
                    [f.org_id, world.as_of(i).isoformat(), int(world.requested_minor[i]), int(world.bad[i])]
                )
        summary["out"] = str(out)
    if db is not None:
        with _open(db) as app:
            credit_service_for(app).load_world(world)
        summary["db"] = db
    if as_json:
        print(json.dumps(summary))
    else:
        _console().print(" ".join(f"{k}={v}" for k, v in summary.items()))


def bench_credit(
    firms: Annotated[int, typer.Option("--firms", help="firms in the training world")] = 4000,
    seed: Annotated[int, typer.Option("--seed")] = 7,
    as_json: JsonOption = False,
) -> None:
    """Decision latency (in-process, HTTP), batch scoring, automation, German credit AUCs (5-fold)."""
    from creditflow.tools.bench.credit import run_credit_bench

    print(json.dumps(run_credit_bench(firms=firms, seed=seed), indent=None if as_json else 2))


DEMO_SEED = 11


def run_credit_demo(console: Console, app: App) -> int:
    """The data-credit part of `creditflow demo`: two online sellers with no core enterprise behind them
    (脱核链贷) apply for a pure-credit loan; the engine answers each in milliseconds with its reasons."""
    from creditflow.credit.scorer import world_vectors
    from creditflow.credit.simulate import simulate

    service = credit_service_for(app)
    console.print("\n[bold cyan]Data credit[/bold cyan]: live operating data instead of statements and collateral")
    world = simulate(3000, DEMO_SEED)
    trained = service.train_on_world(world, validate=False)
    console.print(
        f"  champion trained on a simulated world of {world.n} sellers: model [bold]{trained.champion.version}[/bold]"
        + ("" if trained.challenger is None else f" (challenger scorecard {trained.challenger.version} shadow-scores)")
    )
    applicants = simulate(400, DEMO_SEED + 1)
    scorer = service.scorer()
    vectors = world_vectors(applicants)
    strong = weak = None
    best = worst = None
    for i, fv in enumerate(vectors):
        decision, _ = scorer.decide(fv, int(applicants.requested_minor[i]))
        if decision.outcome == "approve" and fv.values["months_of_data"] >= 18 and (best is None or decision.pd < best):  # type: ignore[operator]
            strong, best = i, decision.pd
        if decision.outcome == "decline" and not decision.knockouts and (worst is None or decision.pd > worst):  # type: ignore[operator]
            weak, worst = i, decision.pd
    assert strong is not None and weak is not None, "the demo world has an approvable and a declinable seller"
    names = {
        strong: ("demo-seller-lanting", "兰亭茶叶旗舰店 Lanting Tea online store"),
        weak: ("demo-seller-haiyan", "海燕服饰网店 Haiyan Apparel online store"),
    }
    service.load_world(applicants, [strong, weak], names=names)
    for i in (strong, weak):
        org, name = names[i]
        amount = int(applicants.requested_minor[i])
        console.print(
            f"\n  [bold]{name}[/bold] applies for a pure-credit loan of {amount / 100:,.2f} CNY "
            f"({int(vectors[i].values['months_of_data'])} months of store, logistics, utilities, tax data on file)"
        )
        record = service.decide(org, amount, as_of=applicants.as_of(i))
        print_decision(console, {**record.to_json(), "decision_ms": round(record.decision_ms, 2)})
    return 0
