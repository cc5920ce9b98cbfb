"""The `probe` command: a thin shell over the library, one module per subcommand in probe/cli/commands/."""
from __future__ import annotations

import argparse
import sys

from probe import __version__
from probe.checks import ParamError
from probe.cli.commands import compare, errors as errors_cmd, hypothesis  # noqa: I001
from probe.cli.commands import (ablate, concepts, dashboard, embed, evaluate, export, find_neurons, fit_probe, heatmap,
                                neuron, record, report, sample, saturation, train)
from probe.analysis.safe_regex import ENV_TIMEOUT, RegexTimeout
from probe.cli import errors as cli_errors
from probe.errors import ProbeError
from probe.runtime.heap import apply_heap_policy
from probe.runtime.threads import apply_thread_policy

# The process-wide heap setting (probe/runtime/heap.py) of the commands that train or record; others keep glibc's.
HEAP_WORK = {"train": "train", "record": "record", "fit-probe": "record", "report": "record"}

# Each module defines NAME, HELP, add_arguments(parser) and run(args) -> int; listed in `probe --help` order.
COMMANDS = [train, sample, export, record, concepts, find_neurons, fit_probe, neuron, hypothesis, saturation,
            embed, evaluate, ablate, compare, errors_cmd, heatmap, report, dashboard]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="probe", description="probe: train, record and look inside character-level RNN language models.")
    parser.add_argument("--version", action="version", version=f"probe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in COMMANDS:
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run, _parser=p)
    return parser


def option_for(parser: argparse.ArgumentParser, param: str) -> str:
    """The command-line spelling of the Python parameter `param` (`topk` -> `--topk`, `char_range` -> `--range`).

    Parameters that are not options of this command (a dest of no action) are shown as they are.
    """
    for action in parser._actions:
        if action.dest == param:
            longs = [o for o in action.option_strings if o.startswith("--")]
            if longs or action.option_strings:
                return (longs or action.option_strings)[0]
            return (action.metavar if isinstance(action.metavar, str) else action.dest).upper()
    return param


def main(argv: list[str] | None = None) -> int:
    try:  # the CPU thread policy first: its OpenMP settings only count before torch loads (command modules import it)
        apply_thread_policy()
    except ProbeError as e:
        print(f"probe: error: {e}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    args._argv = list(argv) if argv is not None else sys.argv[1:]  # which options were typed (resume overrides)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    if args.command in HEAP_WORK:
        apply_heap_policy(HEAP_WORK[args.command])
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print(f"probe {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # every error is one line (PROBE_DEBUG=1: the traceback too)
        if cli_errors.debug():
            raise
        if isinstance(e, ParamError):  # a library parameter, shown as the option that set it
            text, code = e.named(lambda param: option_for(args._parser, param)), 2
        elif isinstance(e, RegexTimeout):  # raised here with an option, not a parameter
            text, code = e.message(f"--regex-timeout SECONDS (or {ENV_TIMEOUT}=SECONDS)"), 2
        elif isinstance(e, ProbeError):
            text, code = str(e), 2
        else:  # disk full, no memory, a library's own error, a fault: named, never empty
            text, code = cli_errors.describe(e)
        print(f"probe {args.command}: error: {cli_errors.one_line(text) or type(e).__name__}", file=sys.stderr)
        return code


if __name__ == "__main__":
    raise SystemExit(main())
