// Draws the charts of a page from its JSON data and pages through the worklist.
(function () {
  "use strict";

  function readJson(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : [];
  }

  function addDays(iso, n) {
    var d = new Date(iso + "T00:00:00Z");
    d.setUTCDate(d.getUTCDate() + n);
    return d.toISOString().slice(0, 10);
  }

  // Periods arrive compact (start, length, offsets with data); the heatmap wants one cell a day.
  function expandPeriods(periods) {
    var cells = [];
    periods.forEach(function (p) {
      var withData = {};
      p.data.forEach(function (i) { withData[i] = true; });
      for (var i = 0; i < p.length; i++) {
        var status = withData[i] ? "data" : (p.open_from !== null && i >= p.open_from ? "still to come" : "no data");
        cells.push({ period: p.label, day: i + 1, date: addDays(p.start, i), status: status });
      }
    });
    return cells;
  }

  // Charts read their values from the page's JSON elements, or from one patient's data.
  function drawCharts(source) {
    document.querySelectorAll(".chart[data-chart]").forEach(function (el) {
      var values = source ? (source[el.dataset.values] || []) : readJson(el.dataset.values);
      if (!values.length) { el.remove(); return; }
      if (typeof window.vegaEmbed !== "function" || !window.RPM_CHARTS) { return; }
      var spec = JSON.parse(JSON.stringify(window.RPM_CHARTS[el.dataset.chart]));
      if (el.dataset.expand === "periods") { values = expandPeriods(values); }
      spec.datasets = { table: values };
      window.vegaEmbed(el, spec, { actions: false, renderer: "svg" }).then(function () {
        el.setAttribute("data-drawn", "true");
      }).catch(function (err) { console.error("chart " + el.dataset.chart + ": " + err); });
    });
  }

  function ready() { document.body.setAttribute("data-ready", "true"); }

  // A patient page: patient.html#000042 reads patient 42 from its shard of patients/.
  function patientPage() {
    var root = document.getElementById("patient");
    if (!root) { return false; }
    var key = window.location.hash.replace(/^#/, "");
    var size = parseInt(root.dataset.shardSize, 10), n = parseInt(key, 10);
    window.addEventListener("hashchange", function () { window.location.reload(); });
    if (!/^[0-9]{6}$/.test(key) || !(n >= 1)) { showMissing(root); ready(); return true; }
    var script = document.createElement("script");
    script.src = "patients/shard-" + String(Math.floor((n - 1) / size) + 1).padStart(4, "0") + ".js";
    script.onload = function () {
      var p = (window.RPM_PATIENTS || {})[key];
      if (p) { fillPatient(root, p); drawCharts(p.charts); } else { showMissing(root); }
      ready();
    };
    script.onerror = function () { showMissing(root); ready(); };
    document.body.appendChild(script);
    return true;
  }

  function showMissing(root) {
    Array.prototype.forEach.call(root.children, function (el) { el.hidden = el.id !== "patient-missing"; });
  }

  function fillPatient(root, p) {
    document.title = "Patient " + p.facts.id + " · " + document.title.split(" · ").slice(1).join(" · ");
    root.querySelectorAll("[data-fact]").forEach(function (el) {
      var v = p.facts[el.dataset.fact];
      el.textContent = v === null || v === undefined ? "" : String(v);
    });
    var now = root.querySelector('[data-section="now"]');
    if (!p.now) { now.hidden = true; } else {
      now.querySelectorAll("td[data-col]").forEach(function (td) { td.textContent = String(p.now[td.dataset.col]); });
    }
    root.querySelectorAll("tbody[data-fill]").forEach(function (body) {
      var rows = p[body.dataset.fill] || [], table = body.closest("table");
      var section = body.closest("section"), empty = section.querySelector("[data-empty]");
      var numeric = Array.prototype.map.call(table.querySelectorAll("thead th"), function (th) {
        return th.classList.contains("num");
      });
      table.hidden = rows.length === 0;
      if (empty) { empty.hidden = rows.length > 0; }
      var frag = document.createDocumentFragment();
      rows.forEach(function (row) {
        var tr = document.createElement("tr");
        row.forEach(function (value, i) {
          var td = document.createElement("td");
          td.textContent = value === null ? "" : String(value);
          if (numeric[i]) { td.className = "num"; }
          tr.appendChild(td);
        });
        frag.appendChild(tr);
      });
      body.replaceChildren(frag);
    });
  }

  // Worklist rows: [patient_id, name, href, urgency, at_risk, period, days, left, 16?, 2?,
  // days since data, minutes, interactive contact, program].
  var COLS = ["patient_id", null, null, null, null, null, "days_so_far", "days_left", "can_reach_16",
    "can_reach_2", "days_since_data", "minutes_so_far", "interactive_contact"];

  function worklist() {
    var body = document.getElementById("worklist-body");
    var data = window.RPM_WORKLIST;
    if (!body || !data) { return; }
    var rows = data.rows, shown = rows, page = 0;
    var find = document.getElementById("wl-find"), risk = document.getElementById("wl-at-risk");
    var urgency = document.getElementById("wl-urgency"), size = document.getElementById("wl-size");
    var status = document.getElementById("wl-status");
    var prev = document.getElementById("wl-prev"), next = document.getElementById("wl-next");

    function cell(tr, text, col, num) {
      var td = document.createElement("td");
      td.textContent = text;
      if (col) { td.setAttribute("data-col", col); }
      if (num) { td.className = "num"; }
      tr.appendChild(td);
    }

    function render() {
      var n = parseInt(size.value, 10), pages = Math.max(1, Math.ceil(shown.length / n));
      if (page >= pages) { page = pages - 1; }
      var from = page * n, to = Math.min(shown.length, from + n);
      var frag = document.createDocumentFragment();
      for (var i = from; i < to; i++) {
        var r = shown[i], tr = document.createElement("tr");
        tr.setAttribute("data-patient", r[0]);
        tr.setAttribute("data-program", r[13]);
        if (r[4]) { tr.className = "risk"; }
        var td = document.createElement("td"), a = document.createElement("a");
        a.href = r[2]; a.textContent = r[0]; td.appendChild(a); td.setAttribute("data-col", "patient_id");
        tr.appendChild(td);
        cell(tr, r[1]); cell(tr, r[13]); cell(tr, r[3]); cell(tr, r[5]);
        for (var c = 6; c < COLS.length; c++) { cell(tr, r[c], COLS[c], c === 6 || c === 7 || c === 10 || c === 11); }
        frag.appendChild(tr);
      }
      body.replaceChildren(frag);
      status.textContent = shown.length ? "rows " + (from + 1) + "–" + to + " of " + shown.length : "no rows match";
      prev.disabled = page === 0;
      next.disabled = to >= shown.length;
    }

    function filter() {
      var q = find.value.trim().toLowerCase(), u = urgency.value, onlyRisk = risk.checked;
      shown = rows.filter(function (r) {
        return (!onlyRisk || r[4]) && (!u || r[3] === u) &&
          (!q || r[0].toLowerCase().indexOf(q) >= 0 || r[1].toLowerCase().indexOf(q) >= 0);
      });
      page = 0;
      render();
    }

    find.addEventListener("input", filter);
    risk.addEventListener("change", filter);
    urgency.addEventListener("change", filter);
    size.addEventListener("change", function () { page = 0; render(); });
    prev.addEventListener("click", function () { page -= 1; render(); });
    next.addEventListener("click", function () { page += 1; render(); });
    render();
  }

  if (!patientPage()) {
    worklist();
    drawCharts(null);
    ready();
  }
}());
