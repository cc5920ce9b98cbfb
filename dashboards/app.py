"""The probe dashboard: scan a recording's units over its text in the browser.

    probe dashboard RECORDING [--checkpoint RUN] [--unit L2.c.502|best|best:CONCEPT] [--sae SAE_FOLDER]
                              [--host 127.0.0.1] [--port 8050]
    python dashboards/app.py RECORDING ...

The page opens on the recording's atlas (probe atlas) when it has one, on its best-explained unit;
`?unit=L2.c.502` in the address opens a unit (and the address follows the unit shown).

The server reads the memory-mapped recording one window (2,000 rows) at a
time; the browser colors the text itself (assets/probe_text.js), so that
switching units needs no round trip. Every value a callback receives is
checked at the edge (dashboards/inputs.py: one check per field type), and
callbacks never raise to Dash: every problem becomes a message in the page.
"""
from __future__ import annotations

import argparse
import functools
import logging
import sys
import time
import traceback
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python dashboards/app.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import plotly.graph_objects as go  # noqa: E402
from dash import ClientsideFunction, Dash, Input, Output, State, ctx, dcc, html, no_update  # noqa: E402
from dash.exceptions import PreventUpdate  # noqa: E402

from dashboards.inputs import as_dict, as_int, as_records, clipped  # noqa: E402
from dashboards.layout import TABS, atlas_entry_view, page  # noqa: E402
from dashboards.service import DashboardService  # noqa: E402
from probe.errors import ProbeError  # noqa: E402
from probe.names import is_feature  # noqa: E402
from probe.runtime.threads import apply_thread_policy  # noqa: E402

log = logging.getLogger("probe.dashboard")
from probe.resources import dashboard_assets_dir  # noqa: E402
ASSETS = dashboard_assets_dir()  # package data (dashboards/assets), found with importlib.resources


def guarded(n_outputs: int, message_at: int):
    """Turn any exception of a callback into a message at output `message_at` (other outputs untouched).

    Bad input is a ProbeError from the checks in dashboards.inputs, shown as it is. Anything else is a
    bug: the page says "internal error" and the log gets the stack and the error clipped (a request's
    values can be megabytes; they are never logged whole).
    """
    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args):
            try:
                return fn(*args)
            except PreventUpdate:
                raise
            except ProbeError as e:
                text = clipped(str(e), 500)
            except Exception as e:  # noqa: BLE001 - the page must show something, never an HTTP 500
                log.error("dashboard callback %s failed: %s: %s\n%s", fn.__name__, type(e).__name__,
                          clipped(str(e)), "".join(traceback.format_tb(e.__traceback__)).rstrip())
                text = f"internal error ({type(e).__name__}): {clipped(str(e), 200)}"
            out = [no_update] * n_outputs
            out[message_at] = text
            return tuple(out) if n_outputs > 1 else out[0]
        return wrapper
    return deco


def create_app(recording, checkpoint=None, *, window_rows: int | None = None,
               regex_timeout: float | None = None, unit: str | None = None, atlas="auto", sae=None) -> Dash:
    """A Dash app over one recording (a path or an open Recording); `checkpoint` enables live text.

    `unit`: the unit the page opens on (`L2.c.502`, `best`, `best:CONCEPT`; default: the atlas's best unit
    when the recording has an atlas); `atlas`: "auto" (the recording's own), an Atlas, or None; `sae`: an SAE
    folder (probe sae) whose features are picked like units (kind `h.f`, names like `L2.h.f123`)."""
    kw = {"unit": unit, "atlas": atlas, "sae": sae}
    if window_rows is not None:
        kw["window_rows"] = window_rows
    if regex_timeout is not None:
        kw["regex_timeout"] = regex_timeout
    svc = DashboardService(recording, checkpoint, **kw)
    app = Dash(__name__, assets_folder=str(ASSETS), title="probe dashboard", update_title=None,
               suppress_callback_exceptions=False)
    app.layout = page(svc)
    app.probe_service = svc  # for tests and embedding
    _install_error_handler(app)
    _register(app, svc)
    return app


def _install_error_handler(app: Dash) -> None:
    from werkzeug.exceptions import HTTPException

    @app.server.errorhandler(Exception)
    def _bad_request(e):  # malformed requests end as 400 with a line, never a 500 with a traceback
        if isinstance(e, HTTPException) and e.code is not None and e.code < 500:
            return e
        log.warning("dashboard request failed: %s: %s", type(e).__name__, clipped(str(e)))
        return {"message": f"bad request: {type(e).__name__}"}, 400


def _register(app: Dash, svc: DashboardService) -> None:
    """Register every callback of the app, one group per part of the page."""
    _register_window(app, svc)
    _register_atlas(app, svc)
    _register_search(app, svc)
    _register_card(app, svc)
    _register_model_views(app, svc)
    _register_live(app, svc)


def _register_window(app: Dash, svc: DashboardService) -> None:
    """Callbacks of the text window (server) and its colours (browser), and picking a unit from a table."""
    # ---------------------------------------------------------------- window (server) and colors (browser)
    @app.callback(Output("win", "data"), Output("win-pos", "data"), Output("win-label", "children"),
                  Output("win-msg", "children"),
                  Input("win-prev", "n_clicks"), Input("win-next", "n_clicks"), Input("goto-btn", "n_clicks"),
                  Input("goto", "n_submit"), Input("brush-matches", "active_cell"), Input("layer", "value"),
                  Input("kind", "value"), Input("jump", "data"), Input("unit-index", "value"),
                  State("win-pos", "data"), State("goto", "value"), State("brush-matches", "data"))
    @guarded(4, 3)
    def load_window(_p, _n, _g, _s, match_cell, layer, kind, jump, index, pos, goto, matches):
        pos = pos if isinstance(pos, dict) else {}  # the page's own store: a bad one starts over at row 0
        start, mark = pos.get("start") or 0, pos.get("mark")
        trig = ctx.triggered_id
        if set(ctx.triggered_prop_ids) == {"unit-index.value"}:  # the browser recolours units by itself;
            cols = pos.get("cols")  # a feature window holds only some features: fetch it when one is missing
            if not (isinstance(kind, str) and is_feature(kind)) or (isinstance(cols, list) and index in cols):
                raise PreventUpdate
        if "jump.data" in ctx.triggered_prop_ids:  # a unit opened at its top context (atlas, address)
            if jump is None:
                raise PreventUpdate
            jump = as_dict(jump, "unit position")
            start, mark = as_int(jump.get("start"), "window start"), jump.get("mark")
        elif trig == "win-prev":
            start, mark = svc.step_window(start, -1), None
        elif trig == "win-next":
            start, mark = svc.step_window(start, +1), None
        elif trig in ("goto-btn", "goto"):
            start, mark = svc.centre_on(goto), None
        elif trig == "brush-matches":
            if match_cell is None:
                raise PreventUpdate
            row_id = as_dict(match_cell, "table cell").get("row_id")
            m = next((m for m in as_records(matches, "list of places") if m.get("id") == row_id), None)
            if m is None:
                raise ProbeError("no such place in the list")
            row = as_int(m.get("row"), "row of the place")
            start = svc.centre_on(row)
            mark = [row, row + as_int(m.get("length"), "length of the place", 1, svc.rec.n_rows)]
        win = svc.window(start, layer, kind, mark, index)
        label = f"rows {win['start']:,}\u2013{win['stop'] - 1:,} of {win['n_rows']:,}"
        pos = {"start": win["start"], "mark": mark}
        if "cols" in win:
            pos["cols"] = win["cols"]
        return win, pos, label, ""

    app.clientside_callback(ClientsideFunction("probe", "renderMain"),
                            Output("render-info", "data"), Output("unit-msg", "children"),
                            Output("unit-name", "children"), Input("win", "data"), Input("unit-index", "value"),
                            Input("topk", "value"))
    app.clientside_callback(ClientsideFunction("probe", "stepUnit"),
                            Output("unit-index", "value", allow_duplicate=True),
                            Input("unit-next", "n_clicks"), Input("unit-prev", "n_clicks"),
                            State("unit-index", "value"), State("win", "data"), prevent_initial_call=True)
    app.clientside_callback(ClientsideFunction("probe", "showPanel"),
                            [Output(f"panel-{v}", "style") for v, _ in TABS], Input("tabs", "value"))

    # ---------------------------------------------------------------- picking a unit from a table or the address
    @app.callback(Output("layer", "value"), Output("kind", "value"),
                  Output("unit-index", "value", allow_duplicate=True), Output("unit-msg", "children",
                                                                              allow_duplicate=True),
                  Output("jump", "data"), Output("atlas-entry", "children"),
                  Input("find-table", "active_cell"), Input("brush-units", "active_cell"),
                  Input("atlas-table", "active_cell"), Input("url", "search"),
                  prevent_initial_call="initial_duplicate")  # the first call reads the page's ?unit=
    @guarded(6, 3)
    def pick_unit(find_cell, brush_cell, atlas_cell, search):
        trig = ctx.triggered_id or "url"
        if trig in ("atlas-table", "url"):  # opened at its top context, with its atlas entry
            if trig == "url":
                found = svc.unit_from_address(search)
            elif atlas_cell is None:
                raise PreventUpdate
            else:
                found = svc.open_unit(as_dict(atlas_cell, "table cell").get("row_id"))
            if found is None:
                raise PreventUpdate
            u, pos, _line = found
            return u.layer, u.kind, u.index, "", dict(pos, stamp=time.time()), atlas_entry_view(svc.atlas_entry(u))
        cell = find_cell if trig == "find-table" else brush_cell
        if cell is None:
            raise PreventUpdate
        u = svc.unit_from_name(as_dict(cell, "table cell").get("row_id"))
        return u.layer, u.kind, u.index, "", no_update, no_update


def _register_atlas(app: Dash, svc: DashboardService) -> None:
    """Callbacks of the atlas tab: its filters (a click on a row is pick_unit's)."""
    @app.callback(Output("atlas-table", "data"), Output("atlas-summary", "children"), Output("atlas-msg", "children"),
                  Output("atlas-table", "active_cell"), Output("atlas-table", "page_current"),
                  Input("atlas-concept", "value"), Input("atlas-layer", "value"), Input("atlas-kind", "value"),
                  Input("atlas-explained", "value"), prevent_initial_call=True)
    @guarded(5, 2)
    def atlas_filter(concept, layer, kind, explained):
        rows, summary = svc.atlas_table(concept, layer, kind, explained)
        return rows, summary, "", None, 0


def _register_search(app: Dash, svc: DashboardService) -> None:
    """Callbacks of find neurons and brush to hypothesis."""
    # ---------------------------------------------------------------- find neurons
    @app.callback(Output("find-table", "data"), Output("find-summary", "children"), Output("find-msg", "children"),
                  Output("find-table", "active_cell"),
                  Input("find-btn", "n_clicks"), Input("regex", "n_submit"),
                  State("concept", "value"), State("regex", "value"), State("regex-flags", "value"),
                  State("find-kinds", "value"), prevent_initial_call=True)
    @guarded(4, 2)
    def find(_c, _s, concept, pattern, flags, kinds):
        rows, summary = svc.find(concept, pattern, flags or "", kinds)
        return rows, summary, "", None

    # ---------------------------------------------------------------- brush to hypothesis
    @app.callback(Output("brush-units", "data"), Output("brush-matches", "data"), Output("brush-summary", "children"),
                  Output("brush-msg", "children"), Output("tabs", "value"),
                  Input("brush", "data"), prevent_initial_call=True)
    @guarded(5, 3)
    def on_brush(data):
        units, matches, summary = svc.brush(data)
        return units, matches, summary, "", "brush"


def _register_card(app: Dash, svc: DashboardService) -> None:
    """Callbacks of the neuron card and its unit ablated on the window."""
    # ---------------------------------------------------------------- neuron card (only while its tab is open)
    @app.callback(Output("card-body", "children"), Output("card-msg", "children"),
                  Input("tabs", "value"), Input("layer", "value"), Input("kind", "value"),
                  Input("unit-index", "value"))
    @guarded(2, 1)
    def card(tab, layer, kind, index):
        if tab != "card":
            raise PreventUpdate
        return render_card(svc.card(layer, kind, index)), ""

    # ---------------------------------------------------------------- the card's unit ablated on the window (on demand)
    @app.callback(Output("ablate-body", "children"), Output("ablate-summary", "children"),
                  Output("ablate-msg", "children"),
                  Input("ablate-btn", "n_clicks"), State("layer", "value"), State("kind", "value"),
                  State("unit-index", "value"), State("win-pos", "data"), State("concept", "value"),
                  State("regex", "value"), State("regex-flags", "value"), prevent_initial_call=True)
    @guarded(3, 2)
    def ablation_view(_n, layer, kind, index, pos, concept, pattern, flags):
        start = as_dict(pos, "window position").get("start") or 0
        fig, summary, _ = svc.ablation(layer, kind, index, start, concept, pattern, flags or "")  # checks each value
        fig.update_layout(width=None, autosize=True)
        return dcc.Graph(figure=fig, config={"displaylogo": False}, responsive=True), summary, ""


def _register_model_views(app: Dash, svc: DashboardService) -> None:
    """Callbacks of the model views and Δloss against a baseline."""
    # ---------------------------------------------------------------- model views (lazy)
    @app.callback(Output("model-body", "children"), Output("model-msg", "children"),
                  Input("tabs", "value"), Input("model-view", "value"), Input("concept", "value"),
                  Input("layer", "value"), Input("kind", "value"))
    @guarded(2, 1)
    def model_view(tab, view, concept, layer, kind):
        if tab != "model":
            raise PreventUpdate
        fig = go.Figure(svc.model_view(view, concept, layer, kind))  # a copy: the cached figure stays as built
        fig.update_layout(width=None, autosize=True)
        return dcc.Graph(figure=fig, config={"displaylogo": False}, responsive=True), ""

    # ---------------------------------------------------------------- Δloss against a baseline (on demand)
    @app.callback(Output("delta-body", "children"), Output("delta-summary", "children"),
                  Output("delta-msg", "children"),
                  Input("delta-btn", "n_clicks"), Input("delta-baseline", "n_submit"), Input("win-pos", "data"),
                  State("delta-baseline", "value"), State("delta-body", "children"), prevent_initial_call=True)
    @guarded(3, 2)
    def delta_view(_n, _s, pos, baseline, current):
        if ctx.triggered_id == "win-pos" and not current:
            raise PreventUpdate  # the window moved before any baseline was asked for
        start = as_dict(pos, "window position").get("start") or 0
        fig, summary = svc.delta_window(baseline, start)  # checks the baseline and the start
        fig.update_layout(width=None, autosize=True)
        return dcc.Graph(figure=fig, config={"displaylogo": False}, responsive=True), summary, ""


def _register_live(app: Dash, svc: DashboardService) -> None:
    """Callbacks of live text and clamped generation."""
    # ---------------------------------------------------------------- live text and clamping
    @app.callback(Output("live-win", "data"), Output("live-msg", "children"),
                  Input("live-run", "n_clicks"), Input("layer", "value"), Input("kind", "value"),
                  State("live-input", "value"), State("live-win", "data"), prevent_initial_call=True)
    @guarded(2, 1)
    def live(_n, layer, kind, text, current):
        if ctx.triggered_id != "live-run" and not current:
            raise PreventUpdate  # layer/kind changed before any live text was run
        return svc.live(text, layer, kind), ""

    app.clientside_callback(ClientsideFunction("probe", "renderLive"),
                            Output("live-info", "data"), Output("live-unit-msg", "children"),
                            Input("live-win", "data"), Input("unit-index", "value"), Input("topk", "value"))

    @app.callback(Output("clamp-out", "children"), Output("clamp-msg", "children"),
                  Input("clamp-btn", "n_clicks"),
                  State("live-input", "value"), State("layer", "value"), State("kind", "value"),
                  State("unit-index", "value"), State("clamp-value", "value"), State("clamp-length", "value"),
                  State("clamp-seed", "value"), prevent_initial_call=True)
    @guarded(2, 1)
    def clamp(_n, prime, layer, kind, index, value, length, seed):
        free, held = svc.clamp(prime, layer, kind, index, value, length, seed)  # checks every value
        name = svc.unit(layer, kind, index).name
        return html.Div([
            html.Div("free-running:", className="note"), html.Div(free, className="clamp-out", id="clamp-free"),
            html.Div(f"with {name} clamped to {float(value):g}:", className="note"),
            html.Div(held, className="clamp-out", id="clamp-held"),
        ]), ""

def _context_line(c: dict) -> html.Div:
    def show(s: str) -> str:
        return str(s).replace("\n", "\u21b5").replace("\t", "\u2192")
    return html.Div([html.Span(f"{float(c['activation']):+9.3f}  row {int(c['row']):>8,}  "),
                     html.Span(show(c.get("left", ""))), html.Span(show(c.get("char", "")), className="hit"),
                     html.Span(show(c.get("right", "")))])


def render_card(card) -> html.Div:
    """The neuron card as components: contexts, histogram, quantiles, promoted/suppressed next symbols."""
    counts, edges = list(card.hist_counts), list(card.hist_edges)
    centres = [(a + b) / 2 for a, b in zip(edges, edges[1:])]
    hist = go.Figure(go.Bar(x=centres, y=counts, marker_color="#4393c3"))
    hist.update_layout(height=220, margin=dict(l=40, r=10, t=30, b=30), yaxis_type="log",
                       title=dict(text=f"{card.unit}: activation histogram (density {float(card.density):.3f})",
                                  font=dict(size=13)))
    def effect(pairs):
        return ", ".join(f"{sym!r} {float(w):+.2f}" for sym, w in list(pairs)[:10]) or "\u2014"
    quantiles = ", ".join(f"q{float(q) * 100:g} {float(v):+.3g}" for q, v in dict(card.quantiles).items())
    return html.Div([
        html.H4(f"{card.unit}"),
        html.Div(f"mean {float(card.mean):+.4g}, std {float(card.std):.4g}; {quantiles}", className="note"),
        html.Div(getattr(card, "note", "") or None, className="note"),
        dcc.Graph(figure=hist, config={"displayModeBar": False}),
        html.Div(f"promotes: {effect(card.promoted)}", className="note"),
        html.Div(f"suppresses: {effect(card.suppressed)}", className="note"),
        html.H4("top activations"),
        html.Div([_context_line(c) for c in card.top], className="card-contexts", id="card-top"),
        html.H4("bottom activations"),
        html.Div([_context_line(c) for c in card.bottom], className="card-contexts"),
    ])


# ------------------------------------------------------------------------ command line

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def serve(recording, checkpoint=None, *, host: str = "127.0.0.1", port: int = 8050, unit: str | None = None,
          sae=None) -> int:
    """Serve the dashboard over `recording` until interrupted (debug off); `checkpoint` enables live text;
    `unit` is the unit the page opens on (a name, `best` or `best:CONCEPT`); `sae` adds an SAE's features."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ProbeError(f"port must be between 1 and 65535, not {port!r}")
    if not isinstance(host, str) or not host:
        raise ProbeError(f"host must be an address such as 127.0.0.1, not {host!r}")
    app = create_app(recording, checkpoint, unit=unit, sae=sae)
    svc = app.probe_service
    if host not in LOCAL_HOSTS:
        print(f"probe dashboard: warning: serving on {host}: anyone who can reach it can read the recording",
              file=sys.stderr)
    print(f"probe dashboard: {svc.describe()}\n  {svc.opening_line()}\n  open http://{host}:{port}/",
          file=sys.stderr)
    app.run(host=host, port=port, debug=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python dashboards/app.py RECORDING [--checkpoint RUN] [--host H] [--port P]` (as `probe dashboard`)."""
    parser = argparse.ArgumentParser(prog="dashboards/app.py", description=__doc__.splitlines()[0])
    parser.add_argument("recording", help="a recording folder (made by probe record)")
    parser.add_argument("--checkpoint", default=None, help="run or checkpoint folder for live text")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8050, help="port (default 8050)")
    parser.add_argument("--unit", default=None, help="open on this unit: a name (L2.c.502), best or best:CONCEPT")
    parser.add_argument("--sae", default=None, help="an SAE folder (probe sae): pick its features like units")
    args = parser.parse_args(argv)
    try:
        apply_thread_policy()  # the server process's CPU threads (probe/runtime/threads.py), before torch loads
        return serve(args.recording, args.checkpoint, host=args.host, port=args.port, unit=args.unit,
                     sae=args.sae)
    except ProbeError as e:
        print(f"dashboards/app.py: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
