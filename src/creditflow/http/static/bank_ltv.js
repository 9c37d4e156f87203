// Bank collateral page: one plotly.js indicator gauge per loan, with the warning, margin-call and
// liquidation bands of that loan. Data comes from <script type="application/json" id="ltv-data">.
"use strict";

(function () {
  const BAND_COLOURS = ["#e3f1e7", "#fff3d6", "#ffd9b0", "#fdecea"];

  function gauge(loan) {
    const element = document.getElementById("gauge-" + loan.loan_id);
    if (!element || typeof Plotly === "undefined") return;
    const warning = loan.warning_bps / 100;
    const call = loan.margin_call_bps / 100;
    const liquidation = loan.liquidation_bps / 100;
    const ltv = loan.ltv_bps === null ? null : loan.ltv_bps / 100;
    const top = Math.max(liquidation * 1.25, ltv === null ? 0 : ltv * 1.05, 100);
    const data = [{
      type: "indicator",
      mode: ltv === null ? "gauge" : "gauge+number",
      value: ltv === null ? top : ltv,
      number: { suffix: " %", valueformat: ".2f" },
      title: { text: ltv === null ? "LTV: no collateral value" : "LTV", font: { size: 14 } },
      gauge: {
        axis: { range: [0, top], ticksuffix: " %" },
        bar: { color: ltv === null ? "#b3261e" : "#14213d", thickness: 0.3 },
        steps: [
          { range: [0, warning], color: BAND_COLOURS[0] },
          { range: [warning, call], color: BAND_COLOURS[1] },
          { range: [call, liquidation], color: BAND_COLOURS[2] },
          { range: [liquidation, top], color: BAND_COLOURS[3] },
        ],
        threshold: { line: { color: "#b3261e", width: 3 }, thickness: 0.8, value: call },
      },
    }];
    const layout = { height: 220, margin: { t: 40, b: 10, l: 30, r: 30 }, paper_bgcolor: "rgba(0,0,0,0)" };
    Plotly.newPlot(element, data, layout, { displayModeBar: false, responsive: true });
    element.dataset.drawn = "yes";
  }

  document.addEventListener("DOMContentLoaded", function () {
    const loans = window.creditflow.pageData("ltv-data") || [];
    loans.forEach(gauge);
  });
})();
