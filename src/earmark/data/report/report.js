// earmark report: interactive event timelines, sortable and filterable tables (no network).
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  function el(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    for (var k in attrs) node.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(node);
    return node;
  }
  function stamp(t) {
    var ms = Math.round(t * 1000), h = Math.floor(ms / 3600000), m = Math.floor(ms / 60000) % 60;
    var s = Math.floor(ms / 1000) % 60, r = ms % 1000;
    return h + ":" + String(m).padStart(2, "0") + ":" + String(s).padStart(2, "0") + "." + String(r).padStart(3, "0");
  }
  function drawTimeline(spec) {
    var box = document.getElementById(spec.id);
    if (!box) return;
    var label = 190, lane = 20, top = 22, duration = Math.max(spec.duration, 0.001);
    var avail = Math.max((box.clientWidth || 1100) - label - 12, 300);
    var pxPerSec = Math.max(avail / duration, Math.min(8, 20000 / duration));
    var width = label + duration * pxPerSec + 64;  // room for the last tick's label
    var height = top + Math.max(spec.lanes.length, 1) * lane + 8;
    var svg = el("svg", {width: width, height: height, role: "img", "aria-label": "event timeline"}, box);
    var step = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600].find(function (s) { return s * pxPerSec >= 70; }) || 7200;
    for (var t = 0; t <= duration; t += step) {
      var x = label + t * pxPerSec;
      el("line", {x1: x, x2: x, y1: top - 4, y2: height, stroke: "#e5e5e5"}, svg);
      el("text", {x: x + 2, y: 12}, svg).textContent = stamp(t).replace(/\.000$/, "");
    }
    spec.lanes.forEach(function (name, i) {
      el("text", {x: 4, y: top + i * lane + 14}, svg).textContent = name.length > 28 ? name.slice(0, 27) + "…" : name;
    });
    if (!spec.lanes.length) el("text", {x: label, y: top + 14}, svg).textContent = "no events";
    spec.events.forEach(function (e) {
      var row = spec.lanes.indexOf(e[0]);
      if (row < 0) return;
      var r = el("rect", {
        "class": "event", x: label + e[1] * pxPerSec, y: top + row * lane + 2,
        width: Math.max((e[2] - e[1]) * pxPerSec, 2), height: lane - 4, rx: 2,
        fill: spec.colours[e[0]] || "#0072B2", "fill-opacity": Math.max(0.15, Math.min(1, e[3]))
      }, svg);
      el("title", {}, r).textContent = e[0] + "  " + stamp(e[1]) + " – " + stamp(e[2]) + "  peak " + e[3];
    });
    box.setAttribute("data-rendered", String(spec.events.length));
  }
  function sortable(table) {
    var heads = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(heads, function (th, col) {
      th.addEventListener("click", function () {
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        var dir = th.getAttribute("data-dir") === "asc" ? -1 : 1;
        th.setAttribute("data-dir", dir === 1 ? "asc" : "desc");
        rows.sort(function (a, b) {
          var x = a.cells[col].textContent, y = b.cells[col].textContent;
          var nx = parseFloat(x.replace(/:/g, "")), ny = parseFloat(y.replace(/:/g, ""));
          var numeric = /^[-\d.:]+$/.test(x) && /^[-\d.:]+$/.test(y);
          return dir * (numeric ? nx - ny : x.localeCompare(y));
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  }
  function filters() {
    document.querySelectorAll("input.filter").forEach(function (input) {
      var table = input.nextElementSibling;
      input.addEventListener("input", function () {
        var q = input.value.toLowerCase();
        Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
          r.style.display = r.textContent.toLowerCase().indexOf(q) >= 0 ? "" : "none";
        });
      });
    });
  }
  var data = JSON.parse(document.getElementById("timeline-data").textContent || "[]");
  data.forEach(drawTimeline);
  document.querySelectorAll("table.sortable").forEach(sortable);
  filters();
})();
