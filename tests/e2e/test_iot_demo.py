"""The `creditflow simulate iot` night, in-process: every scripted incident raises its alarm, the authorised
release raises nothing, the LTV moves into margin call and is cured by the repayment."""

from __future__ import annotations

import io

from rich.console import Console

from creditflow.bootstrap import App
from creditflow.tools.simulate.iot import run_iot_demo


def test_the_night_at_the_warehouse(sqlite_app: App) -> None:
    out = io.StringIO()
    result = run_iot_demo(Console(file=out, width=160), sqlite_app, mqtt_url="mqtt://127.0.0.1:1")  # no broker there
    assert result.via == "in-process" and result.published > 3000
    raised = {(a["asset_id"].split("-")[0], a["alarm_type"], a["severity"]) for a in result.alarms}
    assert raised == {
        ("steel", "unauthorised_outbound", "CRITICAL"),
        ("excavator", "geofence_breach", "CRITICAL"),
        ("excavator", "after_hours_movement", "MAJOR"),
        ("steel", "device_offline", "MAJOR"),
        ("tea", "crop_frost", "MAJOR"),
    }
    theft = next(a for a in result.alarms if a["alarm_type"] == "unauthorised_outbound")
    assert theft["details"]["confidence"] == "high" and theft["status"] == "active"
    bands = [band for _, band, _, _ in result.loan_timeline]
    assert bands == ["WARNING", "MARGIN_CALL", "WARNING"]
    assert "MARGIN_CALL" in out.getvalue() and "unauthorised_outbound" in out.getvalue()
