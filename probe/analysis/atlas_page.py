"""The atlas as one offline HTML page: a sortable, filterable, paged table with a heatmap of each unit's top
contexts (characters coloured by activation) and a link to the dashboard on the unit.

Everything is inline (no CDN, no network): the data is a JSON block read by a small script that renders
one page of rows at a time, so a 3,072-unit atlas stays around a megabyte.
"""
from __future__ import annotations

import html
import json
import math

import numpy as np

N_PAGE_CONTEXTS = 3   # contexts per unit on the page
LEVELS = 7            # colour levels on each side of zero

_CSS = """
body{font:13px/1.4 system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:20px;margin:0 0 4px}
.sub{color:#666;margin-bottom:10px}
table{border-collapse:collapse}
#atlas th{cursor:pointer;background:#f0f0f0;position:sticky;top:0;text-align:left;padding:3px 6px;white-space:nowrap}
#atlas td{padding:2px 6px;border-bottom:1px solid #eee;vertical-align:top;white-space:nowrap}
#atlas td.num{text-align:right;font-variant-numeric:tabular-nums}
.ctx{font:12px/1.25 ui-monospace,monospace;white-space:pre}
.ctx span{padding:0}
.ctx .pk{outline:1px solid #000}
.no{color:#999}
.controls{margin:10px 0;display:flex;gap:12px;align-items:center;flex-wrap:wrap}
.cov td,.cov th{padding:2px 8px;border-bottom:1px solid #eee}
"""

_JS = r"""
(function(){
const D = JSON.parse(document.getElementById('atlas-data').textContent);
const rows = D.units, url = D.dashboard;
const COLS = ['unit','concept','metric','score','chance','p','margin','second','range','contexts'];
const KEY = {unit:0, layer:1, kind:2, concept:3, metric:4, score:5, chance:6, p:7, explained:8, margin:9,
             second:10, lo:11, hi:12, ctx:13, sign:14};
let sortCol = 'margin', sortDir = -1, page = 0;
const PER = 100;
const $ = id => document.getElementById(id);
function color(c){
  const v = c.charCodeAt(0) - 97 - D.levels;
  const a = Math.abs(v) / D.levels;
  if (v > 0) return 'rgba(220,40,30,' + a.toFixed(2) + ')';
  if (v < 0) return 'rgba(30,90,220,' + a.toFixed(2) + ')';
  return 'transparent';
}
function shown(ch){ return ch === '\n' ? '\u21b5' : ch === '\t' ? '\u2192' : ch === '\r' ? '\u240d' : ch; }
function ctxCell(td, ctxs){
  for (const c of ctxs){
    const div = document.createElement('div'); div.className = 'ctx';
    const chars = Array.from(c[0]), lv = c[1];
    chars.forEach((ch, i) => {
      const s = document.createElement('span');
      s.textContent = shown(ch); s.style.background = color(lv[i] || 'h');
      if (i === c[2]) s.className = 'pk';
      div.appendChild(s);
    });
    td.appendChild(div);
  }
}
function fmt(v, d){ return (v === null || v === undefined || Number.isNaN(v)) ? '' : Number(v).toFixed(d); }
function value(r, col){
  switch(col){
    case 'unit': return [r[KEY.layer], r[KEY.kind], Number(r[KEY.unit].split(/[.f]/).pop())];
    case 'range': return r[KEY.hi] - r[KEY.lo];
    case 'contexts': return r[KEY.unit];
    case 'second': return r[KEY.second] || '';
    default: return r[KEY[col]];
  }
}
function cmp(a, b){
  if (Array.isArray(a)){ for (let i = 0; i < a.length; i++){ const c = cmp(a[i], b[i]); if (c) return c; } return 0; }
  if (a === null || a === undefined) return 1;
  if (b === null || b === undefined) return -1;
  return a < b ? -1 : a > b ? 1 : 0;
}
function filtered(){
  const q = $('f-concept').value.trim().toLowerCase(), L = $('f-layer').value, K = $('f-kind').value;
  const only = $('f-explained').checked;
  const out = rows.filter(r => (!q || String(r[KEY.concept]).toLowerCase().includes(q) ||
                                 String(r[KEY.unit]).toLowerCase().includes(q))
      && (L === '' || String(r[KEY.layer]) === L) && (K === '' || r[KEY.kind] === K) && (!only || r[KEY.explained]));
  out.sort((a, b) => sortDir * cmp(value(a, sortCol), value(b, sortCol)));
  return out;
}
function render(){
  const list = filtered(), n = list.length, pages = Math.max(1, Math.ceil(n / PER));
  page = Math.min(page, pages - 1);
  const body = $('atlas-body'); body.textContent = '';
  for (const r of list.slice(page * PER, page * PER + PER)){
    const tr = document.createElement('tr'); tr.dataset.unit = r[KEY.unit];
    if (!r[KEY.explained]) tr.className = 'no';
    const a = document.createElement('a'); a.href = url + '?unit=' + encodeURIComponent(r[KEY.unit]);
    a.textContent = r[KEY.unit]; a.target = '_blank';
    const cells = [a, r[KEY.concept] + (r[KEY.sign] < 0 ? ' (\u2212)' : ''), r[KEY.metric], fmt(r[KEY.score], 3),
                   fmt(r[KEY.chance], 3), fmt(r[KEY.p], 3), fmt(r[KEY.margin], 3), r[KEY.second] || '',
                   fmt(r[KEY.lo], 2) + ' \u2026 ' + fmt(r[KEY.hi], 2), null];
    cells.forEach((c, i) => {
      const td = document.createElement('td');
      if (i === 9) ctxCell(td, r[KEY.ctx]);
      else if (c instanceof Node) td.appendChild(c);
      else td.textContent = c;
      if ([3,4,5,6].includes(i)) td.className = 'num';
      tr.appendChild(td);
    });
    body.appendChild(tr);
  }
  $('count').textContent = n + ' units, page ' + (page + 1) + ' of ' + pages;
  document.querySelectorAll('#atlas th').forEach(th => {
    th.textContent = th.dataset.label + (th.dataset.col === sortCol ? (sortDir > 0 ? ' \u25b2' : ' \u25bc') : '');
  });
}
document.querySelectorAll('#atlas th').forEach(th => th.addEventListener('click', () => {
  const c = th.dataset.col;
  if (sortCol === c) sortDir = -sortDir;
  else { sortCol = c; sortDir = ['unit','concept','second','metric'].includes(c) ? 1 : -1; }
  page = 0; render();
}));
['f-concept','f-layer','f-kind','f-explained'].forEach(id =>
  $(id).addEventListener('input', () => { page = 0; render(); }));
$('prev').addEventListener('click', () => { page = Math.max(0, page - 1); render(); });
$('next').addEventListener('click', () => { page += 1; render(); });
window.atlasRender = render;
render();
})();
"""


def levels(acts, lo: float, hi: float) -> str:
    """One letter per activation: 'a'..'o' with 'h' for zero (diverging when the unit is signed)."""
    a = np.asarray(acts, np.float64)
    signed = lo < 0 < hi
    m = max(abs(lo), abs(hi)) if signed else (hi - lo)
    if not (m > 0 and math.isfinite(m)):
        v = np.zeros(len(a))
    else:
        v = np.rint(LEVELS * (a if signed else a - lo) / m)
    v = np.clip(np.nan_to_num(v), -LEVELS, LEVELS).astype(np.int64) + 97 + LEVELS
    return v.astype(np.uint8).tobytes().decode("ascii")


def _page_contexts(ctxs: list[dict]) -> list[list]:
    """[text, levels, peak] of the first N_PAGE_CONTEXTS contexts (the atlas's compact form)."""
    return [[c["text"], c["levels"], int(c["peak"])] for c in ctxs[:N_PAGE_CONTEXTS]]


def _num(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return round(f, 5) if math.isfinite(f) else None


def atlas_page(atlas, *, dashboard_url: str = "http://127.0.0.1:8050/") -> str:
    """The HTML text of the atlas page."""
    meta = atlas.meta
    units = []
    for r in atlas.table.itertuples():
        second = r.second_concept if isinstance(r.second_concept, str) else None
        units.append([r.unit, int(r.layer), str(r.kind), str(r.concept), str(r.metric), _num(r.score), _num(r.chance),
                      _num(r.p_value), bool(r.explained), _num(r.margin), second, _num(r.act_min), _num(r.act_max),
                      _page_contexts(atlas.contexts.get(r.unit, [])), int(r.sign)])
    data = json.dumps({"units": units, "dashboard": dashboard_url, "levels": LEVELS}, ensure_ascii=False,
                      separators=(",", ":")).replace("</", "<\\/")
    e = html.escape
    cov = "".join(f"<tr><td>L{int(c.layer)}</td><td>{e(str(c.kind))}</td><td>{int(c.n_explained)} / {int(c.n_units)}"
                  f"</td><td>{100 * float(c.fraction):.1f}%</td><td>{int(getattr(c, 'n_strong', 0))}</td></tr>"
                  for c in atlas.coverage.itertuples())
    n = len(atlas.table)
    n_exp = int(atlas.table.explained.sum()) if n else 0
    layers = sorted({int(v) for v in atlas.table.layer}) if n else []
    kinds = sorted({str(v) for v in atlas.table.kind}) if n else []
    opt = lambda vals, fmt: "".join(f'<option value="{e(str(v))}">{e(fmt(v))}</option>' for v in vals)  # noqa: E731
    heads = [("unit", "unit"), ("concept", "concept"), ("metric", "metric"), ("score", "score"), ("chance", "chance"),
             ("p", "p"), ("margin", "margin"), ("second", "second"), ("range", "range"), ("contexts", "top contexts")]
    th = "".join(f'<th data-col="{c}" data-label="{e(l)}">{e(l)}</th>' for c, l in heads)
    thr = (f"explained: family-wise p \u2264 {meta.get('alpha')} over all units \u00d7 candidates "
           f"({meta.get('n_perm')} block permutations, studentised max-T); chance: the score each unit needed")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>probe atlas: {e(str(meta.get('recording', '')))}</title>
<link rel="icon" href="data:,"><style>{_CSS}</style></head>
<body>
<h1>Atlas of {n:,} units</h1>
<div class="sub">{e(str(meta.get('recording', '')))} \u2014 {meta.get('n_rows', 0):,} rows,
{meta.get('n_candidates', 0)} candidate concepts; {n_exp:,} of {n:,} units explained
({100 * n_exp / max(1, n):.1f}%). {e(thr)}. Scores are held out (ranked on rows
{e(str(meta.get('select_rows')))}, scored on rows {e(str(meta.get('report_rows')))}).</div>
<table class="cov"><tr><th>layer</th><th>kind</th><th>explained</th><th>fraction</th><th>strongly
(AUC \u2265 {meta.get('strong_auc', 0.8):.2f} or |r| \u2265 {meta.get('strong_r', 0.6):.2f})</th></tr>{cov}</table>
<div class="controls">
<label>concept or unit <input id="f-concept" type="search" placeholder="digit, column, in [[\u2026]]"></label>
<label>layer <select id="f-layer"><option value="">all</option>{opt(layers, lambda v: f'L{v}')}</select></label>
<label>kind <select id="f-kind"><option value="">all</option>{opt(kinds, str)}</select></label>
<label><input id="f-explained" type="checkbox"> explained only</label>
<button id="prev">\u2190 prev</button><button id="next">next \u2192</button><span id="count"></span>
</div>
<table id="atlas"><thead><tr>{th}</tr></thead><tbody id="atlas-body"></tbody></table>
<script type="application/json" id="atlas-data">{data}</script>
<script>{_JS}</script>
</body></html>
"""
