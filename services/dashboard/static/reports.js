// Reports charts (Chart.js, vendored): data comes embedded in the page as JSON.
(() => {
  const node = document.getElementById("report-data");
  if (!node || typeof Chart === "undefined") return;
  const data = JSON.parse(node.textContent);
  const palette = ["#2563eb", "#d97706", "#dc2626", "#059669", "#7c3aed", "#db2777", "#0891b2", "#65a30d"];
  const common = { responsive: true, animation: false, interaction: { mode: "index", intersect: false } };

  new Chart(document.getElementById("chart-fps"), {
    type: "line",
    data: { labels: data.x, datasets: [{ label: "effective fps", data: data.fps, borderColor: palette[0], tension: 0.2 }] },
    options: { ...common, scales: { y: { beginAtZero: true, title: { display: true, text: "fps" } } } },
  });

  document.querySelectorAll("canvas.latency").forEach((canvas) => {
    const series = data.latency[canvas.dataset.hop];
    new Chart(canvas, {
      type: "line",
      data: {
        labels: data.x,
        datasets: ["p50", "p95", "p99"].map((q, i) => ({ label: q, data: series[q], borderColor: palette[i], tension: 0.2 })),
      },
      options: { ...common, scales: { y: { beginAtZero: true, title: { display: true, text: "ms" } } } },
    });
  });

  new Chart(document.getElementById("chart-detections"), {
    type: "bar",
    data: {
      labels: data.x,
      datasets: Object.entries(data.detections).map(([label, counts], i) => ({
        label, data: counts, backgroundColor: palette[i % palette.length],
      })),
    },
    options: { ...common, scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } },
  });
})();
