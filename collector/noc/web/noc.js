// spanflow live view: reads /api/events (server-sent events) and draws the
// frames. No library, nothing fetched but this origin.
"use strict";
(function () {
  const $ = (s) => document.querySelector(s);
  const SVG = "http://www.w3.org/2000/svg";
  const state = { hello: null, hist: {}, frame: null, view: 0 };
  const views = ["lines", "traffic", "projects", "health"];
  const params = new URLSearchParams(location.search);

  // Numbers: bits per second and bytes, SI units.
  function si(v, unit) {
    const u = ["", "k", "M", "G", "T", "P"];
    let i = 0;
    v = Number(v) || 0;
    while (Math.abs(v) >= 1000 && i < u.length - 1) { v /= 1000; i++; }
    return (Math.abs(v) >= 100 || i === 0 ? v.toFixed(0) : v.toFixed(1)) + " " + u[i] + unit;
  }
  const bps = (v) => si(v, "bit/s");
  const bytes = (v) => si(v, "B");
  const pct = (v) => (100 * v).toFixed(1) + " %";

  // Kibana Discover on a KQL query, last 15 minutes.
  function rison(s) { return "'" + String(s).replace(/!/g, "!!").replace(/'/g, "!'") + "'"; }
  function discover(q) {
    const h = state.hello;
    if (!h || !h.kibana || !q) return null;
    const g = "(time:(from:now-15m,to:now))";
    const ds = h.data_view ? "dataSource:(dataViewId:" + rison(h.data_view) + ",type:dataView)," : "";
    const a = "(" + ds + "query:(language:kuery,query:" + rison(q) + "))";
    return h.kibana + "/app/discover#/?_g=" + encodeURIComponent(g) + "&_a=" + encodeURIComponent(a);
  }
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) {
      if (k === "class") e.className = attrs[k]; else e.setAttribute(k, attrs[k]);
    }
    for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(k == null ? "" : String(k)));
    return e;
  }
  // link wraps content in a Discover link when Kibana is configured.
  function link(q, ...kids) {
    const u = discover(q);
    const a = el(u ? "a" : "span", u ? { href: u, target: "_blank", rel: "noopener", title: q } : { title: q || "" }, ...kids);
    return a;
  }
  function fill(tbody, rows) { tbody.replaceChildren(...rows); }

  // spark draws a history; with a capacity its top is the capacity, so
  // the height is the % of capacity.
  function spark(vals, capacity) {
    const s = document.createElementNS(SVG, "svg");
    s.setAttribute("class", "spark");
    s.setAttribute("viewBox", "0 0 100 20");
    s.setAttribute("preserveAspectRatio", "none");
    const n = Math.max(2, state.hello ? state.hello.points : vals.length, vals.length);
    const top = Math.max(capacity || 1, ...vals);
    const pts = vals.map((v, i) => ((100 * (n - vals.length + i)) / (n - 1)).toFixed(2) + "," + (20 - (19 * v) / top).toFixed(2));
    const p = document.createElementNS(SVG, "polyline");
    p.setAttribute("points", pts.join(" "));
    s.append(p);
    return s;
  }

  function talkers(top, rowQuery) {
    const d = el("span", { class: "talkers" });
    (top || []).slice(0, 3).forEach((t, i) => {
      if (i) d.append(" · ");
      const q = (rowQuery ? "(" + rowQuery + ") and " : "") + 'source.ip:"' + t.addr + '"';
      d.append(link(q, t.addr + " " + bps(t.bps)));
    });
    return d;
  }

  function drawLines(f) {
    const tick = state.hello ? state.hello.tick : 1;
    fill($("#lines tbody"), (f.lines || []).map((l) => {
      const h = state.hist[l.key] || [];
      const volume = (h.reduce((a, b) => a + b, 0) * tick) / 8;
      const bar = el("div", { class: "bar" });
      const fillEl = el("i");
      const u = l.util == null ? null : l.util;
      fillEl.style.width = Math.min(100, 100 * (u == null ? 0 : u)).toFixed(1) + "%";
      if (u != null && u >= 0.9) fillEl.className = "crit"; else if (u != null && u >= 0.7) fillEl.className = "warn";
      bar.append(fillEl);
      return el("tr", { "data-key": l.key, "data-bps": l.bps, "data-volume": volume },
        el("td", {}, link(l.q, l.name)), el("td", {}, bar), el("td", { class: "n" }, bps(l.bps)),
        el("td", { class: "n" }, u == null ? "—" : pct(u)), el("td", { class: "n" }, bytes(volume)),
        el("td", {}, spark(h, l.capacity)), el("td", {}, talkers(l.top, l.q)));
    }));
  }

  function drawSplit(f) {
    const split = f.split || [];
    const total = split.reduce((a, s) => a + s.bps, 0);
    $("#split").replaceChildren(...split.map((s) => {
      const a = link(s.q, s.name + " " + bps(s.bps));
      a.className = s.name;
      a.setAttribute("data-bytes", s.bytes || 0);
      a.style.flex = String(total > 0 ? s.bps / total : 1 / split.length);
      return a;
    }));
  }

  // A two-column Sankey: sources left, destinations right, band widths
  // proportional to bits per second.
  function drawSankey(f) {
    const svg = $("#sankey");
    const links = (f.links || []).filter((l) => l.bps > 0).slice(0, 30);
    const W = 1000, H = 520, pad = 8, nodeW = 14;
    const side = (names) => {
      const m = new Map();
      for (const [n, v] of names) m.set(n, (m.get(n) || 0) + v);
      return [...m.entries()].sort((a, b) => b[1] - a[1]);
    };
    const left = side(links.map((l) => [l.from, l.bps]));
    const right = side(links.map((l) => [l.to, l.bps]));
    const total = links.reduce((a, l) => a + l.bps, 0) || 1;
    const place = (nodes) => {
      const avail = H - pad * (nodes.length + 1);
      const pos = new Map();
      let y = pad;
      for (const [n, v] of nodes) { const h = Math.max(2, (avail * v) / total); pos.set(n, { y, h, off: 0 }); y += h + pad; }
      return pos;
    };
    const L = place(left), R = place(right);
    const kids = [];
    for (const l of links) {
      const a = L.get(l.from), b = R.get(l.to);
      const w = Math.max(1, ((H - pad * (left.length + 1)) * l.bps) / total);
      const y0 = a.y + a.off + w / 2, y1 = b.y + b.off + w / 2;
      a.off += w; b.off += w;
      const p = document.createElementNS(SVG, "path");
      p.setAttribute("d", `M${260 + nodeW},${y0.toFixed(1)} C500,${y0.toFixed(1)} 500,${y1.toFixed(1)} ${740},${y1.toFixed(1)}`);
      p.setAttribute("stroke-width", w.toFixed(1));
      p.setAttribute("data-from", l.from); p.setAttribute("data-to", l.to); p.setAttribute("data-bytes", l.bytes);
      const t = document.createElementNS(SVG, "title");
      t.textContent = `${l.from} → ${l.to}: ${bps(l.bps)}`;
      p.append(t);
      const u = discover(l.q);
      if (u) { const a2 = document.createElementNS(SVG, "a"); a2.setAttribute("href", u); a2.setAttribute("target", "_blank"); a2.append(p); kids.push(a2); } else kids.push(p);
    }
    const label = (pos, x, anchor, tx) => {
      for (const [n, p] of pos) {
        const r = document.createElementNS(SVG, "rect");
        r.setAttribute("x", x); r.setAttribute("y", p.y.toFixed(1)); r.setAttribute("width", nodeW); r.setAttribute("height", p.h.toFixed(1));
        const t = document.createElementNS(SVG, "text");
        t.setAttribute("x", tx); t.setAttribute("y", (p.y + p.h / 2 + 5).toFixed(1)); t.setAttribute("text-anchor", anchor);
        t.textContent = n;
        kids.push(r, t);
      }
    };
    label(L, 260, "end", 250);
    label(R, 740, "start", 740 + nodeW + 10);
    svg.replaceChildren(...kids);
  }

  function drawProjects(f) {
    fill($("#projects tbody"), (f.projects || []).map((p) => el("tr", { "data-key": p.name, "data-bps": p.bps },
      el("td", {}, link(p.q, p.name)), el("td", { class: "n" }, bps(p.bps)),
      el("td", { class: "n" }, p.rtt_p95_ms == null ? "—" : p.rtt_p95_ms.toFixed(1) + " ms"),
      el("td", { class: "n" + (p.retrans_ratio > 0.02 ? " bad" : "") }, p.retrans_ratio == null ? "—" : pct(p.retrans_ratio)),
      el("td", {}, talkers(p.top, p.q)))));
    fill($("#services tbody"), (f.services || []).slice(0, 12).map((s) => el("tr", { "data-key": s.name },
      el("td", {}, link(s.q, s.name)), el("td", { class: "n" }, bps(s.bps)))));
  }

  function drawHealth(f) {
    const alerts = f.alerts || [];
    $("#alertcount").textContent = alerts.length ? alerts.length + " firing" : "none";
    fill($("#alerts tbody"), alerts.map((a) => el("tr", { "data-rule": a.rule, "data-key": a.key },
      el("td", { class: "sev-" + (a.severity || "none") }, a.severity || "—"),
      el("td", {}, a.discover ? el("a", { href: a.discover, target: "_blank", rel: "noopener" }, a.rule) : link(a.q, a.rule)),
      el("td", { title: a.scope + " " + a.key }, a.scope + " " + (a.on || a.key)), el("td", { class: "n" }, Number(a.value).toPrecision(4)),
      el("td", {}, new Date(a.fired_at).toLocaleTimeString()))));
    const now = Date.now();
    fill($("#exporters tbody"), (f.exporters || []).map((e) => {
      const age = e.stats_at ? (now - new Date(e.stats_at).getTime()) / 1000 : null;
      return el("tr", { "data-key": e.addr, "data-datagrams": e.datagrams },
        el("td", {}, link(e.q, e.addr)), el("td", { class: "n" }, bps(e.bps)), el("td", { class: "n" }, e.datagrams),
        el("td", { class: "n" + (e.sequence_losses ? " bad" : "") }, e.sequence_losses),
        el("td", { class: "n" + (e.decode_errors ? " bad" : "") }, e.decode_errors),
        el("td", { class: "n" }, e.templates),
        el("td", { class: age != null && age > 180 ? "stale" : "" }, age == null ? "none yet" : Math.round(age) + " s ago"));
    }));
    const h = f.health || {};
    $("#health").textContent = `collector: ${h.datagrams} datagrams, ${h.kernel_drops} dropped by the kernel; ` +
      `${h.clients} screens; ${h.frames_dropped} frames skipped for slow screens` +
      (h.lines_not_charted ? `; ${h.lines_not_charted} lines not charted` : "") +
      (h.pairs_overflow ? `; ${h.pairs_overflow} flows in other → other` : "");
  }

  function draw() {
    const f = state.frame;
    if (!f) return;
    $("#clock").textContent = new Date(f.time).toLocaleTimeString() + " (seq " + f.seq + ")";
    drawLines(f); drawSplit(f); drawSankey(f); drawProjects(f); drawHealth(f);
    document.body.setAttribute("data-seq", f.seq);
  }

  function onHello(h) {
    state.hello = h;
    state.hist = h.history || {};
    state.lastTime = h.end ? new Date(h.end).getTime() : 0;
    $("#histspan").textContent = String(Math.round((h.points * h.tick) / 60));
  }

  function onFrame(f) {
    const t = new Date(f.time).getTime();
    const tickMs = (state.hello ? state.hello.tick : 1) * 1000;
    // A frame already in the hello's history (the last frame, re-sent at
    // connection) is not added twice.
    if (t > (state.lastTime || 0)) {
      const steps = state.lastTime ? Math.max(1, Math.round((t - state.lastTime) / tickMs)) : 1;
      const limit = state.hello ? state.hello.points : 900;
      const seen = new Set();
      for (const l of f.lines || []) {
        seen.add(l.key);
        const h = state.hist[l.key] || (state.hist[l.key] = []);
        for (let i = 1; i < steps && h.length; i++) h.push(0);
        h.push(l.bps);
        if (h.length > limit) h.splice(0, h.length - limit);
      }
      for (const k in state.hist) if (!seen.has(k)) delete state.hist[k];
      state.lastTime = t;
    }
    state.frame = f;
    draw();
  }

  function connect() {
    const es = new EventSource("api/events");
    es.addEventListener("hello", (e) => { onHello(JSON.parse(e.data)); $("#state").textContent = "live"; $("#state").className = "up"; });
    es.addEventListener("frame", (e) => onFrame(JSON.parse(e.data)));
    es.onerror = () => { $("#state").textContent = "reconnecting"; $("#state").className = "down"; };
  }

  // Views: all at once on a desk, one at a time in kiosk mode.
  function show(i) {
    state.view = (i + views.length) % views.length;
    state.shownAt = Date.now();
    document.querySelectorAll(".view").forEach((v) => v.classList.toggle("current", v.id === "view-" + views[state.view]));
    document.querySelectorAll("#tabs button[data-view]").forEach((b) => b.classList.toggle("on", b.dataset.view === views[state.view]));
  }
  // kiosk shows one view at a time, rotating every hello.rotate seconds
  // unless ?view= fixes it. Full screen needs a user gesture: the Kiosk
  // button asks for it; a wall browser runs in its own kiosk mode.
  function kiosk(gesture) {
    document.body.classList.add("kiosk");
    if (gesture && document.documentElement.requestFullscreen && !document.fullscreenElement) {
      document.documentElement.requestFullscreen().catch(() => {});
    }
    show(views.indexOf(params.get("view")) >= 0 ? views.indexOf(params.get("view")) : state.view);
    if (!state.rotating && !params.has("view")) {
      state.rotating = true;
      setInterval(() => {
        const every = (state.hello ? state.hello.rotate : 20) * 1000;
        if (Date.now() - state.shownAt >= every) show(state.view + 1);
      }, 250);
    }
  }
  document.querySelectorAll("#tabs button[data-view]").forEach((b) =>
    b.addEventListener("click", () => { show(views.indexOf(b.dataset.view)); if (!document.body.classList.contains("kiosk")) document.getElementById("view-" + b.dataset.view).scrollIntoView(); }));
  $("#kiosk").addEventListener("click", () => kiosk(true));
  show(0);
  if (params.get("kiosk") === "1" || params.has("view")) kiosk(false);
  connect();
})();
