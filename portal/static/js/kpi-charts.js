// KPI charts: collection rate and arrears per district, payments by channel. The page computes
// every figure; amounts arrive as exact yuan strings and the charts only draw them.
(function () {
  var dataEl = document.getElementById("kpi-data");
  if (!dataEl || !window.echarts) { return; }
  var data = JSON.parse(dataEl.textContent);
  var labels = JSON.parse(document.getElementById("kpi-labels").textContent);
  var draw = function (id, option) {
    var el = document.getElementById(id);
    if (!el) { return; }
    var chart = echarts.init(el, null, { renderer: "canvas" });
    option.animation = false;
    chart.setOption(option);
    window.addEventListener("resize", function () { chart.resize(); });
    el.dataset.rendered = "1";
  };
  draw("kpi-collection-chart", {
    tooltip: { trigger: "axis" },
    xAxis: { type: "category", data: data.districts },
    yAxis: { type: "value", name: labels.rate, max: 100 },
    series: [{ type: "bar", data: data.collection_rate.map(Number) }]
  });
  draw("kpi-arrears-chart", {
    tooltip: { trigger: "axis" },
    legend: { bottom: 0 },
    xAxis: { type: "category", data: data.districts },
    yAxis: { type: "value", name: labels.yuan },
    series: data.buckets.map(function (b) {
      return { name: b, type: "bar", stack: "owed", data: data.arrears[b].map(Number) };
    })
  });
  draw("kpi-payments-chart", {
    tooltip: { trigger: "item" },
    series: [{ type: "pie", radius: "60%", data: data.channels.map(function (c) {
      return { name: c, value: Number(data.payments[c]) };
    }) }]
  });
})();
