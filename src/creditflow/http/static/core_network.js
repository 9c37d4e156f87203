// The core enterprise's credit reach: a plotly Sankey of value flowing from the issuer down the tiers.
// Data comes from the page (<script type="application/json" id="sankey-data">), never from inline code.
"use strict";

(function () {
  function draw() {
    const element = document.getElementById("sankey");
    const data = window.creditflow && window.creditflow.pageData("sankey-data");
    if (!element || !data || !window.Plotly) return;
    const trace = {
      type: "sankey",
      arrangement: "snap",
      valueformat: ",d",
      node: {
        label: data.labels,
        color: data.colors,
        customdata: data.node_yuan,
        hovertemplate: "%{label}<br>%{customdata} CNY<extra></extra>",
        pad: 14,
        thickness: 16,
        line: { width: 0 },
      },
      link: {
        source: data.source,
        target: data.target,
        value: data.value_minor,
        customdata: data.link_yuan,
        hovertemplate: "%{source.label} → %{target.label}<br>%{customdata} CNY<extra></extra>",
        color: "rgba(31, 95, 191, 0.25)",
      },
    };
    const layout = {
      margin: { l: 10, r: 10, t: 10, b: 10 },
      height: Math.max(320, 28 * data.labels.length),
      font: { size: 12 },
    };
    window.Plotly.newPlot(element, [trace], layout, { displayModeBar: false, responsive: true });
    element.dataset.drawn = "true";
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw);
  else draw();
})();
