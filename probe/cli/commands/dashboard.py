"""probe dashboard: serve the Dash page over a recording (127.0.0.1 by default, debug off)."""
from __future__ import annotations

import argparse

from probe.errors import ProbeError

NAME = "dashboard"
HELP = "scan a recording's units over its text in the browser (Dash)"
DESCRIPTION = """Serve a page that colors the recording's text by any unit (in the browser, window by window),
opens on the recording's atlas (every unit with its best explanation, when `probe atlas` made one),
ranks units for a regex or concept, lists units for a brushed span, shows neuron cards, model views,
and runs the model on typed text (with --checkpoint).

examples:
  probe dashboard recordings/wiki-val --checkpoint runs/wiki
  probe dashboard recordings/wiki-val --unit best:quote
  probe dashboard recordings/wiki-val --sae saes/wiki-L2h --unit L2.h.f123
  then open http://127.0.0.1:8050/ (or http://127.0.0.1:8050/?unit=L2.c.502 for one unit)"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recording", help="a recording folder (made by probe record)")
    p.add_argument("--checkpoint", default=None,
                   help="run or checkpoint folder for live text and training views "
                        "(default: the recording's own checkpoint, if it is still there)")
    p.add_argument("--unit", default=None, metavar="UNIT",
                   help="open on this unit: a name (L2.c.502), best (the atlas's best-explained unit) or "
                        "best:CONCEPT (its best unit for CONCEPT); default: best when the recording has an atlas")
    p.add_argument("--sae", default=None, metavar="SAE_FOLDER",
                   help="a sparse autoencoder folder (made by probe sae on this recording's model): its features "
                        "can be picked like units (kind h.f, names like L2.h.f123)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8050, help="port (default 8050)")


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise ProbeError(f"--port must be between 1 and 65535, not {args.port}")
    from dashboards.app import serve
    kw = {"host": args.host, "port": args.port}
    if args.unit is not None:
        kw["unit"] = args.unit
    if args.sae is not None:
        kw["sae"] = args.sae
    return serve(args.recording, args.checkpoint, **kw)
