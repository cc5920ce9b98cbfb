"""probe dashboard: serve the Dash page over a recording (127.0.0.1 by default, debug off)."""
from __future__ import annotations

import argparse

from probe.errors import ProbeError

NAME = "dashboard"
HELP = "scan a recording's units over its text in the browser (Dash)"
DESCRIPTION = """Serve a page that colors the recording's text by any unit (in the browser, window by window),
ranks units for a regex or concept, lists units for a brushed span, shows neuron cards, model views,
and runs the model on typed text (with --checkpoint).

example:
  probe dashboard recordings/wiki-val --checkpoint runs/wiki
  then open http://127.0.0.1:8050/"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recording", help="a recording folder (made by probe record)")
    p.add_argument("--checkpoint", default=None,
                   help="run or checkpoint folder for live text and training views "
                        "(default: the recording's own checkpoint, if it is still there)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8050, help="port (default 8050)")


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise ProbeError(f"--port must be between 1 and 65535, not {args.port}")
    from dashboards.app import serve
    return serve(args.recording, args.checkpoint, host=args.host, port=args.port)
