/* probe dashboard: colored text rendered in the browser.
 *
 * A window payload (see dashboards/windows.py) holds the window's characters
 * and the activations of every unit of one layer and kind (base64 float16,
 * rows x H). The text is built once per window as ONE HTML string; switching
 * the unit only rewrites the background colors of the existing spans.
 */
(function () {
  "use strict";

  // float16 bit pattern -> float32, as a lookup table.
  var F16 = new Float32Array(65536);
  (function () {
    for (var h = 0; h < 65536; h++) {
      var s = (h & 0x8000) ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
      if (e === 0) F16[h] = s * Math.pow(2, -14) * (f / 1024);
      else if (e === 31) F16[h] = f ? NaN : s * Infinity;
      else F16[h] = s * Math.pow(2, e - 15) * (1 + f / 1024);
    }
  })();

  function hexRgb(c) {
    var h = c.replace("#", "");
    return [parseInt(h.substr(0, 2), 16), parseInt(h.substr(2, 2), 16), parseInt(h.substr(4, 2), 16)];
  }

  // Same interpolation as dashboards.windows.interpolate.
  function rgbAt(scale, t) {
    t = Math.min(1, Math.max(0, t));
    for (var i = 0; i + 1 < scale.length; i++) {
      var t0 = scale[i][0], t1 = scale[i + 1][0];
      if (t <= t1) {
        var f = t1 === t0 ? 0 : (t - t0) / (t1 - t0), a = hexRgb(scale[i][1]), b = hexRgb(scale[i + 1][1]);
        return [0, 1, 2].map(function (k) { return Math.round(a[k] + (b[k] - a[k]) * f); });
      }
    }
    return hexRgb(scale[scale.length - 1][1]);
  }

  var LEVELS = 512;
  var lutCache = {};
  function lut(scale) {
    var key = JSON.stringify(scale);
    if (!lutCache[key]) {
      var out = new Array(LEVELS);
      for (var i = 0; i < LEVELS; i++) {
        var c = rgbAt(scale, i / (LEVELS - 1));
        out[i] = "rgb(" + c[0] + ", " + c[1] + ", " + c[2] + ")";
      }
      lutCache[key] = out;
    }
    return lutCache[key];
  }

  function esc(s) {
    return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")
      .replace(/\{/g, "&#123;").replace(/\}/g, "&#125;");
  }

  // Visible stand-ins for whitespace in the top-k grid (as probe.figures.colors.display_char).
  function shown(ch, guess) {
    if (ch === "\n") return "\u21b5";
    if (ch === " ") return guess ? "\u2423" : "\u00b7";
    if (ch === "\t") return "\u2192";
    if (ch.length === 1 && (ch.charCodeAt(0) < 32 || ch.charCodeAt(0) === 127)) return "\u00b7";
    return ch;
  }

  function decode(b64) {
    var bin = atob(b64), n = bin.length, u8 = new Uint8Array(n);
    for (var i = 0; i < n; i++) u8[i] = bin.charCodeAt(i);
    var u16 = new Uint16Array(u8.buffer), out = new Float32Array(u16.length);
    for (var j = 0; j < u16.length; j++) out[j] = F16[u16[j]];
    return out;
  }

  function buildHtml(win, showTopk) {
    var chars = win.chars, parts = [], mark = win.mark, m0 = -1, m1 = -1;
    if (mark && mark.length === 2) { m0 = mark[0] - win.start; m1 = mark[1] - win.start; }
    function cls(r, ch) {
      var c = "ch";
      if (ch === "\n") c += " nl";
      if (r >= m0 && r < m1) c += " mark";
      return c;
    }
    if (!showTopk || !win.topk) {
      for (var r = 0; r < chars.length; r++) {
        if (chars[r] === "") continue;
        parts.push('<span class="' + cls(r, chars[r]) + '" data-r="' + r + '">' + esc(chars[r]) + "</span>");
      }
      return parts.join("");
    }
    var pl = lut(win.pscale), line = [];
    function flush() { parts.push('<div class="tkline">' + line.join("") + "</div>"); line = []; }
    for (var q = 0; q < chars.length; q++) {
      if (chars[q] === "") continue;
      var col = '<span class="col"><span class="' + cls(q, chars[q]) + '" data-r="' + q + '">' +
        esc(shown(chars[q], false)) + "</span>";
      var guesses = win.topk[q] || [];
      for (var k = 0; k < guesses.length; k++) {
        var p = guesses[k][1], idx = Math.round(Math.min(1, Math.max(0, p)) * (LEVELS - 1));
        col += '<span class="tk" style="background:' + pl[idx] + (p > 0.6 ? ";color:#fff" : "") + '">' +
          esc(shown(guesses[k][0], true)) + "</span>";
      }
      line.push(col + "</span>");
      if (chars[q] === "\n") flush();
    }
    if (line.length) flush();
    return parts.join("");
  }

  var views = {};  // container id -> {key, el, win, vals, spans, rows, unit}

  function tip() {
    var t = document.getElementById("probe-tip");
    if (!t) {
      t = document.createElement("div");
      t.id = "probe-tip";
      t.className = "probe-tip";
      document.body.appendChild(t);
    }
    return t;
  }

  function rowOf(node, el) {
    var e = node && (node.nodeType === 1 ? node : node.parentElement);
    var span = e && e.closest ? e.closest("[data-r]") : null;
    return span && el.contains(span) ? parseInt(span.getAttribute("data-r"), 10) : null;
  }

  // As probe.names.Unit.name: L1.c.123, and for a feature of an SAE (kind "h.f") L2.h.f123.
  function unitName(win, u) {
    var f = /\.f$/.test(win.kind);
    return "L" + win.layer + "." + win.kind + (f ? "" : ".") + u;
  }

  // The column of unit u in the payload: u itself, or its place in `cols` when the window holds only some units
  // (an SAE's features: the window's most active ones); -1 when it is not there (the server sends a new window).
  function columnOf(win, u) { return win.cols ? win.cols.indexOf(u) : u; }
  function nUnits(win) { return win.n_units || win.H; }

  function showTip(id, ev) {
    var st = views[id];
    if (!st) return;
    var r = rowOf(ev.target, st.el);
    var t = tip();
    if (r === null) { t.style.display = "none"; return; }
    var win = st.win, H = win.H, u = st.unit, j = (u !== null) ? columnOf(win, u) : -1;
    var v = (j >= 0) ? st.vals[r * H + j] : NaN;
    var ch = win.chars[r], html = '<div class="tip-head">row ' + (win.start + r) + " &nbsp;" +
      esc(JSON.stringify(ch)) + "</div>";
    if (u !== null) html += '<div class="tip-act">' + unitName(win, u) + " = " + v.toPrecision(4) + "</div>";
    if (win.loss) {
      var l = win.loss[r];
      html += '<div class="tip-loss">loss ' + (l === null ? "\u2014" : l.toFixed(3) + " bits") + "</div>";
    }
    if (win.topk && win.topk[r]) {
      html += '<table class="tip-topk">';
      win.topk[r].forEach(function (g) {
        html += "<tr><td>" + esc(JSON.stringify(g[0])) + "</td><td>" + (100 * g[1]).toFixed(1) + "%</td></tr>";
      });
      html += "</table>";
    }
    t.innerHTML = html;
    t.style.display = "block";
    t.style.left = Math.min(ev.clientX + 14, window.innerWidth - 220) + "px";
    t.style.top = (ev.clientY + 16) + "px";
  }

  function brush(id) {
    var st = views[id], sel = window.getSelection();
    if (!st || !sel || sel.isCollapsed || !sel.anchorNode) return;
    var rg = sel.getRangeAt(0), a = rowOf(rg.startContainer, st.el), b = rowOf(rg.endContainer, st.el);
    if (a === null || b === null) return;
    // a range that starts at the end of one character's text or ends at the start of another excludes it
    if (rg.startContainer.nodeType === 3 && rg.startOffset >= rg.startContainer.length) a += 1;
    if (rg.endContainer.nodeType === 3 && rg.endOffset === 0) b -= 1;
    if (b < a) return;
    var start = st.win.start + Math.min(a, b), stop = st.win.start + Math.max(a, b) + 1;
    if (window.dash_clientside && window.dash_clientside.set_props) {
      window.dash_clientside.set_props("brush", {data: {start: start, stop: stop, stamp: Date.now()}});
    }
  }

  function bind(id, el) {
    if (el.getAttribute("data-bound") === "1") return;
    el.setAttribute("data-bound", "1");
    el.addEventListener("mousemove", function (ev) { showTip(id, ev); });
    el.addEventListener("mouseleave", function () { tip().style.display = "none"; });
    if (id === "text-view") el.addEventListener("mouseup", function () { brush(id); });
  }

  function recolor(st, c) {
    var win = st.win, H = win.H, vals = st.vals, spans = st.spans, rows = st.rows, L = st.lut;
    var lo = win.lo[c], span = win.hi[c] - win.lo[c];
    for (var j = 0; j < spans.length; j++) {
      var v = vals[rows[j] * H + c], t = span > 0 ? (v - lo) / span : 0.5;
      if (!(t >= 0)) t = 0; else if (t > 1) t = 1;
      var s = spans[j].style;
      s.backgroundColor = L[Math.round(t * (LEVELS - 1))];
      s.color = (t < 0.15 || t > 0.85) ? "#ffffff" : "#111111";
    }
  }

  function render(id, win, unit, topkOn) {
    var el = document.getElementById(id), nu = window.dash_clientside.no_update;
    if (!el) return [nu, nu];
    if (!win) {
      el.innerHTML = "";
      delete views[id];
      return [null, ""];
    }
    var showTopk = !!(topkOn && topkOn.length), key = win.wid + "|" + showTopk, st = views[id];
    var t0 = performance.now(), rebuilt = false;
    if (!st || st.key !== key || st.el !== el) {
      el.innerHTML = buildHtml(win, showTopk);
      var spans = el.querySelectorAll("[data-r]"), rows = new Int32Array(spans.length);
      for (var j = 0; j < spans.length; j++) rows[j] = parseInt(spans[j].getAttribute("data-r"), 10);
      st = views[id] = {key: key, el: el, win: win, vals: decode(win.acts), spans: spans, rows: rows,
                        unit: null, lut: lut(win.scale)};
      bind(id, el);
      rebuilt = true;
      var marked = el.querySelector(".mark");  // a place opened from a table: scrolled into view
      if (marked) el.scrollTop = Math.max(0, marked.offsetTop - el.offsetTop - el.clientHeight / 3);
    }
    var u = (typeof unit === "string" && unit.trim() !== "") ? Number(unit) : unit;
    if (typeof u !== "number" || !isFinite(u) || Math.floor(u) !== u || u < 0 || u >= nUnits(win)) {
      return [nu, "no unit " + JSON.stringify(unit) + ": units of this layer run from 0 to " + (nUnits(win) - 1)];
    }
    var col = columnOf(win, u);
    if (col < 0) return [nu, ""];  // a feature this window does not hold: its window is on its way
    var t1 = performance.now();
    recolor(st, col);
    st.unit = u;
    var t2 = performance.now();
    el.setAttribute("data-unit", unitName(win, u));
    el.setAttribute("data-recolor-ms", (t2 - t1).toFixed(2));
    window.probeLastRender = {id: id, unit: unitName(win, u), at: t2, recolorMs: t2 - t1, totalMs: t2 - t0,
                              rebuilt: rebuilt};
    return [{unit: unitName(win, u), recolor_ms: t2 - t1, total_ms: t2 - t0, rebuilt: rebuilt}, ""];
  }

  // The address names the unit shown (?unit=L2.c.502), so that a reload or a shared link opens it again.
  function remember(name) {
    try {
      var q = new URLSearchParams(window.location.search);
      if (q.get("unit") === name) return;
      q.set("unit", name);
      window.history.replaceState(window.history.state, "", window.location.pathname + "?" + q.toString() +
                                  window.location.hash);
    } catch (e) { /* an address that cannot change (a file:// page): nothing to remember */ }
  }

  function clickIfThere(id) {
    var b = document.getElementById(id);
    if (b) b.click();
  }

  document.addEventListener("keydown", function (ev) {
    var tag = (ev.target && ev.target.tagName) || "";
    if (/^(INPUT|TEXTAREA|SELECT)$/.test(tag) || (ev.target && ev.target.isContentEditable)) return;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    var to = {ArrowRight: "unit-next", ArrowLeft: "unit-prev", "]": "win-next", "[": "win-prev"}[ev.key];
    if (to) { ev.preventDefault(); clickIfThere(to); }
  });

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    probe: {
      renderMain: function (win, unit, topkOn) {
        var out = render("text-view", win, unit, topkOn), info = out[0];
        var name = (info && info.unit) ? info.unit : window.dash_clientside.no_update;
        if (info && info.unit) remember(info.unit);
        return [info, out[1], name];
      },
      renderLive: function (win, unit, topkOn) { return render("live-view", win, unit, topkOn); },
      stepUnit: function (nNext, nPrev, unit, win) {
        var trig = window.dash_clientside.callback_context.triggered;
        var H = win ? nUnits(win) : null, u = Number(unit);
        if (!H || !trig || !trig.length) return window.dash_clientside.no_update;
        if (!isFinite(u) || Math.floor(u) !== u) u = 0;
        var d = trig[0].prop_id.indexOf("unit-next") === 0 ? 1 : -1;
        return ((u + d) % H + H) % H;
      },
      showPanel: function (tab) {
        var names = ["atlas", "find", "brush", "card", "model", "live"];  // dashboards/layout.py TABS
        return names.map(function (n) { return {display: n === tab ? "block" : "none"}; });
      }
    }
  });
})();
