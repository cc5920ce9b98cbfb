"""The page's components (ids are what app.py's callbacks and assets/probe_text.js refer to)."""
from __future__ import annotations

from dash import dash_table, dcc, html

from dashboards.atlas_view import COLUMNS as ATLAS_COLUMNS, context_cells, describe_entry
from dashboards.service import DashboardService

TABS = [("atlas", "Atlas"), ("find", "Find neurons"), ("brush", "Brush"), ("card", "Neuron card"),
        ("model", "Model views"), ("live", "Live text")]  # the Atlas tab shows when the recording has an atlas
_TABLE_STYLE = dict(style_table={"maxHeight": "320px", "overflowY": "auto", "overflowX": "auto"},
                    style_cell={"fontFamily": "monospace", "fontSize": "12px", "padding": "2px 6px",
                                "textAlign": "left", "cursor": "pointer"},
                    page_action="none")
ATLAS_HEADERS = {"p_value": "p", "second": "second best", "score": "held-out", "explained": "\u2713"}


def _table(id_: str, columns: list[str]) -> dash_table.DataTable:
    return dash_table.DataTable(id=id_, columns=[{"name": c, "id": c} for c in columns], data=[], **_TABLE_STYLE)


def unit_controls(svc: DashboardService) -> html.Div:
    rec, first = svc.rec, svc.initial
    return html.Div(className="controls", children=[
        html.Label("layer"),
        dcc.Dropdown(id="layer", className="dd", clearable=False, value=first.layer,
                     options=[{"label": f"L{l}", "value": l} for l in rec.layers]),
        html.Label("kind"),
        dcc.Dropdown(id="kind", className="dd", clearable=False,
                     value=first.kind, options=[{"label": k, "value": k} for k in svc.unit_kinds()]),
        html.Label("unit"),
        dcc.Input(id="unit-index", type="number", value=first.index, step=1, debounce=True,
                  style={"width": "120px"}),
        html.Button("\u25c0", id="unit-prev", title="previous unit (\u2190)"),
        html.Button("\u25b6", id="unit-next", title="next unit (\u2192)"),
        html.Span(id="unit-name", className="unit-label"),
        dcc.Checklist(id="topk", options=[{"label": " top-k rows", "value": "on"}], value=[], inline=True),
        html.Span(id="unit-msg", className="msg"),
    ])


def window_controls(svc: DashboardService) -> html.Div:
    return html.Div(className="controls", children=[
        html.Button("\u00ab previous", id="win-prev", title="previous window ([)"),
        html.Button("next \u00bb", id="win-next", title="next window (])"),
        html.Label("go to row"),
        dcc.Input(id="goto", type="number", step=1, style={"width": "140px"}),
        html.Button("go", id="goto-btn"),
        html.Span(id="win-label", className="note"),
        html.Span(id="win-msg", className="msg"),
    ])


def _hidden(svc: DashboardService, tab: str) -> dict | None:
    return None if first_tab(svc) == tab else {"display": "none"}


def first_tab(svc: DashboardService) -> str:
    """The tab the page opens on: the atlas when the recording has one."""
    return "atlas" if svc.atlas is not None else "find"


def atlas_panel(svc: DashboardService) -> html.Div:
    """Every unit of the atlas, best explained first, filterable; a click shows the unit at its top context."""
    layers, kinds = svc.atlas_sites()
    rows, summary = svc.atlas_table() if svc.atlas is not None else ([], "")
    entry = svc.atlas_entry(svc.initial)
    return html.Div(id="panel-atlas", className="panel", style=_hidden(svc, "atlas"), children=[
        html.Div(None if svc.atlas is not None else
                 "This recording has no atlas: make one with probe atlas REC and restart the dashboard.",
                 className="note"),
        html.Div(className="controls", children=[
            html.Label("concept"),
            dcc.Dropdown(id="atlas-concept", placeholder="any concept", style={"width": "190px"},
                         options=[{"label": f"{c} ({n})", "value": c} for c, n in svc.atlas_concepts()]),
            html.Label("layer"),
            dcc.Dropdown(id="atlas-layer", className="dd", placeholder="all",
                         options=[{"label": f"L{l}", "value": l} for l in layers]),
            html.Label("kind"),
            dcc.Dropdown(id="atlas-kind", className="dd", placeholder="all",
                         options=[{"label": k, "value": k} for k in kinds]),
            dcc.Checklist(id="atlas-explained", options=[{"label": " explained only", "value": "on"}], value=[],
                          inline=True),
        ]),
        html.Div(id="atlas-msg", className="msg"),
        html.Div(summary, id="atlas-summary", className="note"),
        html.Div(atlas_entry_view(entry), id="atlas-entry", className="atlas-entry"),
        dash_table.DataTable(
            id="atlas-table", data=rows,
            columns=[{"name": ATLAS_HEADERS.get(c, c), "id": c} for c in ATLAS_COLUMNS],
            page_action="native", page_size=100, sort_action="native",
            style_table={"maxHeight": "70vh", "overflowY": "auto", "overflowX": "auto"},
            style_cell=_TABLE_STYLE["style_cell"],
            style_data_conditional=[{"if": {"filter_query": '{explained} != "\u2713"'}, "color": "#999"}],
            tooltip_delay=300, tooltip_duration=None),
    ])


def atlas_entry_view(entry: dict | None) -> list | None:
    """A unit's atlas entry: one line (concept, held-out score beside chance) and its top contexts coloured."""
    if not entry:
        return None
    lines = []
    for c in context_cells(entry):
        spans = [html.Span(ch, style={"backgroundColor": "rgb({}, {}, {})".format(*rgb)}) for ch, rgb in c["chars"]]
        act = "" if c["activation"] is None else f"{c['activation']:+.3f}"
        lines.append(html.Div([html.Span(f"{act:>8} row {c['row']:>8,}  ", className="ctx-at"), *spans],
                              className="ctx"))
    return [html.Div(describe_entry(entry)), html.Div(lines, className="atlas-contexts", id="atlas-contexts")]


def find_panel(svc: DashboardService) -> html.Div:
    names = svc.concept_names()
    return html.Div(id="panel-find", className="panel", style=_hidden(svc, "find"), children=[
        html.Div(className="controls", children=[
            html.Label("regex"),
            dcc.Input(id="regex", type="text", placeholder=r"e.g. \[\[.*?\]\]", style={"width": "260px"},
                      debounce=False),
            dcc.Input(id="regex-flags", type="text", placeholder="flags (ims)", style={"width": "70px"}),
            html.Label("or concept"),
            dcc.Dropdown(id="concept", options=[{"label": n, "value": n} for n in names],
                         placeholder="built-in", style={"width": "180px"}),
            html.Label("kinds"),
            dcc.Checklist(id="find-kinds", options=[{"label": k, "value": k} for k in svc.rec.kinds],
                          value=[k for k in svc.rec.kinds if k in ("h", "c")] or svc.rec.kinds[:1], inline=True),
            html.Button("find neurons", id="find-btn"),
        ]),
        html.Div(id="find-msg", className="msg"),
        html.Div(id="find-summary", className="note"),
        _table("find-table", ["unit", "metric", "score", "sign", "chance", "p_value", "mean_in", "mean_out"]),
    ])


def brush_panel() -> html.Div:
    return html.Div(id="panel-brush", className="panel", style={"display": "none"}, children=[
        html.Div("Select a span of the text with the mouse: the units on inside it and off around it are listed, "
                 "then the other places where the top units do the same. Click a unit to show it, a place to go "
                 "there.", className="note"),
        html.Div(id="brush-msg", className="msg"),
        html.Div(id="brush-summary", className="note"),
        _table("brush-units", ["unit", "score", "sign", "inside", "outside", "separation"]),
        html.H4("same pattern elsewhere"),
        _table("brush-matches", ["row", "length", "context"]),
    ])


def card_panel() -> html.Div:
    return html.Div(id="panel-card", className="panel", style={"display": "none"}, children=[
        html.Div(id="card-msg", className="msg"),
        dcc.Loading(html.Div(id="card-body")),
        ablation_section(),
    ])


def ablation_section() -> html.Div:
    """In the neuron card: the unit's ablation effect on the current window, on demand (needs the model)."""
    return html.Div(id="ablation-section", children=[
        html.H4("is it used? hold it at its mean over this window"),
        html.Div(className="controls", children=[
            html.Button("measure ablation on this window", id="ablate-btn"),
            html.Span("(the model reruns the window's text with the unit held, and with 10 random units of its "
                      "layer and kind; inside and outside the Find tab's concept when it occurs here)",
                      className="note"),
        ]),
        html.Div(id="ablate-msg", className="msg"),
        html.Div(id="ablate-summary", className="note"),
        dcc.Loading(html.Div(id="ablate-body")),
    ])


def model_panel(svc: DashboardService) -> html.Div:
    return html.Div(id="panel-model", className="panel", style={"display": "none"}, children=[
        html.Div(className="controls", children=[
            dcc.RadioItems(id="model-view", value="training", inline=True,
                           options=[{"label": f" {v} ", "value": k} for k, v in svc.MODEL_VIEWS.items()]),
        ]),
        html.Div(id="model-msg", className="msg"),
        dcc.Loading(html.Div(id="model-body")),
    ])


def live_panel(svc: DashboardService) -> html.Div:
    has_model = svc.checkpoint_path() is not None
    return html.Div(id="panel-live", className="panel", style={"display": "none"}, children=[
        html.Div(None if has_model else "No model: start the dashboard with --checkpoint RUN to use live text.",
                 className="note"),
        dcc.Textarea(id="live-input", rows=4, placeholder="Type or paste text; the model reads it.",
                     value=""),
        html.Div(className="controls", children=[
            html.Button("run the model", id="live-run"),
            html.Span("(colored by the selected unit)", className="note"),
        ]),
        html.Div(id="live-msg", className="msg"),
        html.Div(id="live-unit-msg", className="msg"),
        html.Div(id="live-view", className="text-view"),
        html.H4("clamp the selected unit and generate"),
        html.Div(className="controls", children=[
            html.Label("value"),
            dcc.Input(id="clamp-value", type="number", style={"width": "110px"}, value=1.0, step=0.1),
            html.Label("length"),
            dcc.Input(id="clamp-length", type="number", style={"width": "110px"}, value=200, min=1, max=2000),
            html.Label("seed"),
            dcc.Input(id="clamp-seed", type="number", style={"width": "100px"}, value=0, min=0),
            html.Button("generate", id="clamp-btn"),
        ]),
        html.Div(id="clamp-msg", className="msg"),
        html.Div(id="clamp-out"),
    ])


def delta_section() -> html.Details:
    """Under the text: the current window colored by Δloss against an n-gram baseline (on demand)."""
    return html.Details(id="delta-section", children=[
        html.Summary("color this window by Δloss against a baseline"),
        html.Div(className="controls", children=[
            html.Label("baseline"),
            dcc.Input(id="delta-baseline", type="text", value="ngram:5", placeholder="ngram:N",
                      style={"width": "110px"}, debounce=False),
            html.Button("show Δloss", id="delta-btn"),
            html.Span("(n-gram fitted on the checkpoint's training split; the first fit of a corpus takes a while)",
                      className="note"),
        ]),
        html.Div(id="delta-msg", className="msg"),
        html.Div(id="delta-summary", className="note"),
        dcc.Loading(html.Div(id="delta-body")),
    ])


def page(svc: DashboardService) -> html.Div:
    return html.Div(className="probe-page", children=[
        html.Div(className="probe-header", children=[
            html.H1("probe: units over text"), html.Div(svc.describe(), className="info")]),
        unit_controls(svc),
        html.Div(className="main", children=[
            html.Div(className="left", children=[window_controls(svc),
                                                 html.Div(id="text-view", className="text-view"),
                                                 delta_section()]),
            html.Div(className="right", children=[
                dcc.Tabs(id="tabs", value=first_tab(svc), children=[
                    dcc.Tab(label=l, value=v) for v, l in TABS if v != "atlas" or svc.atlas is not None]),
                atlas_panel(svc), find_panel(svc), brush_panel(), card_panel(), model_panel(svc), live_panel(svc)]),
        ]),
        dcc.Location(id="url", refresh=False),
        dcc.Store(id="win"), dcc.Store(id="win-pos", data=dict(svc.initial_pos)), dcc.Store(id="jump"),
        dcc.Store(id="brush"), dcc.Store(id="render-info"), dcc.Store(id="live-win"), dcc.Store(id="live-info"),
    ])
