// Usage chart: monthly kWh (stacked peak/flat/valley where the meter has them) and the amount.
(function () {
  var el = document.getElementById("usage-chart");
  if (!el || !window.echarts) { return; }
  var data = JSON.parse(document.getElementById("usage-data").textContent);
  var labels = JSON.parse(document.getElementById("usage-labels").textContent);
  var num = function (v) { return v === null ? null : Number(v); };
  // fen -> "12.34" by integer arithmetic; the chart only draws it.
  var yuan = function (fen) { return Math.floor(fen / 100) + "." + String(fen % 100).padStart(2, "0"); };
  var hasTou = data.peak.some(function (v) { return v !== null; });
  var series = [];
  if (hasTou) {
    ["peak", "flat", "valley"].forEach(function (reg) {
      if (data[reg].some(function (v) { return v !== null; })) {
        series.push({ name: labels[reg], type: "bar", stack: "kwh", data: data[reg].map(num) });
      }
    });
  } else {
    series.push({ name: labels.total, type: "bar", data: data.kwh.map(num) });
  }
  series.push({ name: labels.amount, type: "line", yAxisIndex: 1, smooth: true,
                data: data.total_fen.map(yuan) });
  var chart = echarts.init(el, null, { renderer: "canvas" });
  chart.setOption({
    tooltip: { trigger: "axis" },
    legend: { bottom: 0 },
    grid: { left: 48, right: 56, bottom: 64, top: 40 },
    xAxis: { type: "category", data: data.periods },
    yAxis: [{ type: "value", name: labels.kwh }, { type: "value", name: labels.amount }],
    series: series,
    animation: false
  });
  window.addEventListener("resize", function () { chart.resize(); });
  el.dataset.rendered = String(data.periods.length);
})();
