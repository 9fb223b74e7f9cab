// The campaign page's chart: Chart.js draws the data the live partial carries in
// <script type="application/json" id="activity-data">; each poll swaps the partial and the
// chart is updated in place (not rebuilt, so it does not flicker or lose its size).
(function () {
  "use strict";
  let chart = null;

  function draw() {
    const source = document.getElementById("activity-data");
    const canvas = document.getElementById("activity-chart");
    if (!source || !canvas || typeof Chart === "undefined") return;
    const points = JSON.parse(source.textContent || "[]");
    const labels = points.map((p) => p.label);
    const series = [
      ["Sent per minute", points.map((p) => p.sent), "#0b57d0"],
      ["Failed per minute", points.map((p) => p.failed), "#a50e0e"],
      ["Delivered per minute", points.map((p) => p.delivered), "#0b6e2e"],
      ["Read per minute", points.map((p) => p.read), "#6b3fa0"],
    ];
    if (chart && chart.canvas !== canvas) { chart.destroy(); chart = null; }
    if (!chart) {
      chart = new Chart(canvas, {
        type: "line",
        data: { labels, datasets: series.map(([label, data, color]) => (
          { label, data, borderColor: color, backgroundColor: color, pointRadius: 0, tension: 0.2 })) },
        options: { animation: false, responsive: true, maintainAspectRatio: false,
                   scales: { y: { beginAtZero: true, title: { display: true, text: "messages" } } } },
      });
    } else {
      chart.data.labels = labels;
      series.forEach(([, data], i) => { chart.data.datasets[i].data = data; });
      chart.update("none");
    }
  }

  document.addEventListener("DOMContentLoaded", draw);
  document.addEventListener("htmx:afterSettle", draw);
})();
