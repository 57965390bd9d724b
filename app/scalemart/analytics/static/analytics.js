// The analytics console: polls the five JSON endpoints and fills their sections.
// Each section is independent: one that answers 503 shows its message, the others keep updating; a part of an
// answer listed in its `unavailable` shows that message in its place.
// Every value goes in through textContent (never innerHTML): alert summaries and names are data.
"use strict";

(() => {
  const LOGIN = "/analytics/login";
  const TIMEOUT_MS = 4000;
  const root = document.getElementById("console");
  const POLL_MS = Number(root.dataset.pollMs) || 5000;
  const windowSelect = document.getElementById("window");
  const ENDPOINTS = {
    system: () => "/analytics/api/metrics/realtime",
    performance: () => "/analytics/api/metrics/performance?window=" + encodeURIComponent(windowSelect.value),
    business: () => "/analytics/api/metrics/business",
    users: () => "/analytics/api/metrics/users",
    alerts: () => "/analytics/api/alerts",
  };
  let stopped = false;

  // --- formatting: null (no data) is a dash
  const isNum = (v) => typeof v === "number" && Number.isFinite(v);
  const FORMATS = {
    int: (v) => Math.round(v).toLocaleString("en"),
    num: (v) => v.toLocaleString("en", { maximumFractionDigits: v < 10 ? 2 : 1 }),
    pct: (v) => (v * 100).toLocaleString("en", { maximumFractionDigits: v < 0.1 ? 2 : 1 }) + " %",
    ms: (v) => (v * 1000).toLocaleString("en", { maximumFractionDigits: v < 0.01 ? 2 : 0 }) + " ms",
    s: (v) => v.toLocaleString("en", { maximumFractionDigits: 1 }) + " s",
    bytes: (v) => (v / 1048576).toLocaleString("en", { maximumFractionDigits: 1 }) + " MiB",
    money: (v) => v.toLocaleString("en", { minimumFractionDigits: 2, maximumFractionDigits: 2 }),
  };
  const fmt = (v, kind) => isNum(v) ? (FORMATS[kind] || FORMATS.num)(v) : (v == null || v === "" ? "–" : String(v));
  const get = (obj, path) => path.split(".").reduce((o, k) => (o == null ? undefined : o[k]), obj);
  const hhmmss = (d) => d.toTimeString().slice(0, 8);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    for (const c of children) node.append(c instanceof Node ? c : String(c));
    return node;
  }

  function fillFields(section, data) {
    for (const node of section.querySelectorAll("[data-field]")) {
      node.textContent = fmt(get(data, node.dataset.field), node.dataset.format);
    }
  }

  function fillTable(tbody, rows, columns, empty) {
    const trs = rows.map((row) => el("tr", {}, ...columns.map((c) => el("td", {}, c(row)))));
    if (!trs.length) trs.push(el("tr", {}, el("td", { colspan: columns.length, class: "empty" }, empty)));
    tbody.replaceChildren(...trs);
  }

  function bar(ratio) {
    if (!isNum(ratio)) return "–";
    const meter = el("meter", { min: "0", max: "1", value: String(Math.min(Math.max(ratio, 0), 1)) });
    return el("span", { class: "bar" }, meter, " " + fmt(ratio, "pct"));
  }

  function when(iso) {
    const d = iso ? new Date(iso) : null;
    if (!d || isNaN(d)) return "–";
    const minutes = Math.max(0, Math.round((Date.now() - d.getTime()) / 60000));
    return hhmmss(d) + (minutes ? " (" + minutes + " min ago)" : "");
  }

  // --- the sections
  const RENDER = {
    system(section, data) {
      fillTable(section.querySelector(".hosts tbody"), data.hosts || [], [
        (h) => el("span", { title: h.instance || "" }, h.host || h.instance || "?"),
        (h) => bar(h.cpu_ratio), (h) => bar(h.memory_ratio), (h) => bar(h.disk_ratio),
      ], "no host reports to Prometheus");
    },
    performance(section, data) {
      fillTable(section.querySelector(".routes tbody"), data.routes || [], [
        (r) => (r.method || "") + " " + (r.route || ""),
        (r) => fmt(r.avg_seconds, "ms"), (r) => fmt(r.p50_seconds, "ms"), (r) => fmt(r.p95_seconds, "ms"),
        (r) => fmt(r.p99_seconds, "ms"), (r) => fmt(r.requests_per_minute, "num"), (r) => fmt(r.error_ratio, "pct"),
      ], "no requests in this window");
    },
    business(section, data) {
      fillTable(section.querySelector(".products tbody"), data.top_products || [], [
        (p) => p.name || p.product_id, (p) => fmt(p.orders, "int"), (p) => fmt(p.units_sold, "int"),
        (p) => fmt(p.revenue, "money"), (p) => fmt(p.stock_left, "int"), (p) => fmt(p.conversion, "pct"),
      ], "no orders yet");
    },
    users() {},
    alerts(section, data) {
      const item = (a, resolved) => {
        const severity = /^[a-z]+$/.test(String(a.severity).toLowerCase()) ? String(a.severity).toLowerCase() : "none";
        const li = el("li", { class: "alert alert-" + severity + (resolved ? " resolved" : ""), "data-severity": severity },
          el("span", { class: "severity" }, severity), " ", el("strong", { class: "name" }, a.name || "?"), " ",
          el("span", { class: "summary" }, a.summary || ""), " ",
          el("small", {}, resolved ? "resolved " + when(a.resolved_at) : "since " + when(a.since)));
        // a runbook base may be a URL or a path in the repository (docs/runbooks, the default): link only the former
        if (/^https?:\/\//.test(a.runbook_url || "")) {
          li.append(" ", el("a", { href: a.runbook_url, rel: "noopener noreferrer", target: "_blank" }, "runbook"));
        } else if (a.runbook_url) {
          li.append(" ", el("small", { class: "runbook" }, "runbook: " + a.runbook_url));
        }
        return li;
      };
      const list = (selector, alerts, resolved, empty) => {
        const items = alerts.map((a) => item(a, resolved));
        section.querySelector(selector).replaceChildren(...(items.length ? items : [el("li", { class: "empty" }, empty)]));
      };
      list(".alerts.active", data.active || [], false, "no active alerts");
      // a part whose source is down (the resolved ones without Prometheus) says so in its place, the rest stays
      const missing = (data.unavailable || {}).resolved;
      if (missing) {
        section.querySelector(".alerts.resolved").replaceChildren(
          el("li", { class: "unavailable" }, missing.message || "unavailable: its source is unreachable"));
      } else {
        list(".alerts.resolved", (data.resolved || []).slice(0, 5), true, "none resolved recently");
      }
    },
  };

  function show(section, state, error) {
    // the first fill of each section, for a benchmark to read (ops/analytics_bench.py)
    const mark = "analytics:" + section.id + ":" + state;
    if (!performance.getEntriesByName(mark).length) performance.mark(mark);
    section.dataset.state = state;
    const box = section.querySelector(".error");
    box.textContent = error || "";
    box.hidden = !error;
    if (state === "ok") section.querySelector(".updated").textContent = "updated " + hhmmss(new Date());
  }

  async function load(id) {
    const section = document.getElementById(id);
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
    try {
      const r = await fetch(ENDPOINTS[id](), { credentials: "same-origin", cache: "no-store", signal: abort.signal,
                                               headers: { Accept: "application/json" } });
      if (r.status === 401) {  // session over: stop polling before more refusals are counted
        stopped = true;
        window.location.assign(LOGIN);
        return;
      }
      const body = await r.json().catch(() => null);
      if (!r.ok) throw new Error((body && body.message) || "HTTP " + r.status + " from " + ENDPOINTS[id]());
      RENDER[id](section, body);
      fillFields(section, body);
      show(section, "ok");
    } catch (e) {
      show(section, "error", e.name === "AbortError" ? "no answer within " + TIMEOUT_MS / 1000 + " s" : e.message);
    } finally {
      clearTimeout(timer);
    }
  }

  function refreshSparklines() {
    for (const img of document.querySelectorAll("img[data-src]")) img.src = img.dataset.src + "?t=" + Date.now();
  }

  async function tick() {
    if (stopped) return;
    refreshSparklines();
    await Promise.all(Object.keys(ENDPOINTS).map(load));
    if (!stopped) setTimeout(tick, POLL_MS);
  }

  windowSelect.addEventListener("change", () => load("performance"));
  tick();
})();
