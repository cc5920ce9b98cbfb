"""The `probe` command: a thin shell over the library, one module per subcommand in probe/cli/commands/."""
from __future__ import annotations

import argparse
import importlib
import sys

from probe import __version__
from probe.errors import ProbeError

# Each module defines NAME, HELP, add_arguments(parser) and run(args) -> int.
COMMANDS = [
    "train", "sample", "export", "record", "concepts", "find_neurons", "fit_probe", "neuron", "saturation",
    "embed", "evaluate", "heatmap", "report", "dashboard",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="probe", description="probe: train, record and look inside character-level RNN language models.")
    parser.add_argument("--version", action="version", version=f"probe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"probe.cli.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"probe.cli.commands.{name}":
                continue
            raise
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args._argv = list(argv) if argv is not None else sys.argv[1:]  # which options were typed (resume overrides)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except ProbeError as e:
        print(f"probe {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"probe {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:  # disk full, permission denied...: one line, not a traceback
        print(f"probe {args.command}: error: {e.strerror or e} ({e.filename or ''})", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
