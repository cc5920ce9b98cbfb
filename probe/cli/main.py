"""The `probe` command: a thin shell over the library, one module per subcommand in probe/cli/commands/.

Start-up stays light: `probe --help` reads the COMMANDS table and imports no command module; `probe CMD`
imports only CMD's module (which imports its heavy libraries inside run()). See ARCHITECTURE.md
("Where new work goes") for how to add a command.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType
from typing import Iterable, NamedTuple

from probe import __version__
from probe.checks import ParamError
from probe.cli import errors as cli_errors
from probe.errors import ProbeError
from probe.runtime.heap import apply_heap_policy
from probe.runtime.threads import defer_thread_policy


class Command(NamedTuple):
    """One subcommand: its name, the module that defines it, and its one-line help (shown without importing it)."""

    name: str
    module: str
    help: str


# Listed in `probe --help` order. Each module defines NAME, HELP, add_arguments(parser) and run(args) -> int;
# NAME and HELP must equal the row's (tests/test_startup.py checks).
COMMANDS = [
    Command("train", "probe.cli.commands.train",
            "train a character-level LSTM, GRU or vanilla RNN language model"),
    Command("sample", "probe.cli.commands.sample", "generate text from a trained model"),
    Command("export", "probe.cli.commands.export",
            "copy a checkpoint for shipping: weights only (float16 by default), no optimizer state"),
    Command("models", "probe.cli.commands.models",
            "list the models shipped with probe (usable by name: probe record wiki) and their cards' numbers"),
    Command("import", "probe.cli.commands.import_model",
            "import a character LSTM/GRU/RNN trained elsewhere (safetensors, weights-only .pt, min-char-rnn .npz)"),
    Command("record", "probe.cli.commands.record",
            "record every state of a model over a text (h, c, gates, top-k, loss)"),
    Command("concepts", "probe.cli.commands.concepts",
            "list the built-in concepts (labellings of text) for find-neurons, fit-probe and embed"),
    Command("find-neurons", "probe.cli.commands.find_neurons",
            "find units that track a concept (regex or built-in), with honest statistics"),
    Command("fit-probe", "probe.cli.commands.fit_probe",
            "fit linear probes for a concept, beside majority, best-unit, untrained and control baselines"),
    Command("atlas", "probe.cli.commands.atlas",
            "explain every unit by its best concept from a generated library (held out, family-wise chance)"),
    Command("neuron", "probe.cli.commands.neuron",
            "show one unit: top contexts (both tails), histogram, quantiles, promoted characters"),
    Command("hypothesis", "probe.cli.commands.hypothesis",
            "rank the units that separate a span of the text from its surroundings, and find the pattern elsewhere"),
    Command("saturation", "probe.cli.commands.saturation",
            "gate saturation per layer: fractions of steps below 0.1 and above 0.9 (Karpathy et al. 2015)"),
    Command("embed", "probe.cli.commands.embed",
            "2-D PCA or UMAP of a layer's hidden states (seeded subsample), colored by a concept"),
    Command("evaluate", "probe.cli.commands.evaluate",
            "loss in nats and bits per character of a model on its test (or val/train) split"),
    Command("ablate", "probe.cli.commands.ablate",
            "hold units at a value and measure the change of loss, inside and outside a concept, against random units"),
    Command("compare", "probe.cli.commands.compare",
            "where one model beats another (or an n-gram): per-character Δloss, concepts, long-range closers"),
    Command("errors", "probe.cli.commands.errors",
            "break a model's errors down by the oracle that would fix them (Karpathy, Johnson & Fei-Fei 2015)"),
    Command("sae", "probe.cli.commands.sae",
            "train a top-k sparse autoencoder on a layer's h or c and report FVU, L0, dead features and loss recovered"),
    Command("sae-compare", "probe.cli.commands.sae_compare",
            "for each concept, the best unit of a site beside the best feature of its sparse autoencoder"),
    Command("heatmap", "probe.cli.commands.heatmap",
            "draw one unit over a passage as colored text (.html, .png, .svg, .pdf)"),
    Command("report", "probe.cli.commands.report",
            "write an offline HTML report (figures as PNG/SVG, tables as CSV) for a recording"),
    Command("dashboard", "probe.cli.commands.dashboard",
            "scan a recording's units over its text in the browser (Dash)"),
]

# The process-wide heap setting (probe/runtime/heap.py) of the commands that train or record; others keep glibc's.
HEAP_WORK = {"train": "train", "record": "record", "fit-probe": "record", "report": "record", "sae": "train"}


def command(name: str) -> Command | None:
    """The COMMANDS row named `name`, or None."""
    return next((c for c in COMMANDS if c.name == name), None)


def load(name: str) -> ModuleType:
    """Import the module of the command `name` (KeyError for an unknown name)."""
    row = command(name)
    if row is None:
        raise KeyError(name)
    return importlib.import_module(row.module)


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The `probe` parser. `commands`: the commands whose modules are imported and whose options are added
    (None: all of them); the others appear in `probe --help` from the table alone."""
    full = None if commands is None else set(commands)
    parser = argparse.ArgumentParser(
        prog="probe", description="probe: train, record and look inside character-level RNN language models.")
    parser.add_argument("--version", action="version", version=f"probe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for row in COMMANDS:
        if full is not None and row.name not in full:
            sub.add_parser(row.name, help=row.help, description=row.help)
            continue
        mod = importlib.import_module(row.module)
        p = sub.add_parser(row.name, help=row.help, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run, _parser=p)
    return parser


def chosen_command(argv: list[str]) -> str | None:
    """The subcommand named on a command line (the first word that is not an option), or None."""
    for word in argv:
        if word == "--":
            return None
        if not word.startswith("-"):
            return word if command(word) else None
    return None


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


def _is_regex_timeout(e: Exception) -> bool:
    """isinstance(e, RegexTimeout), without importing safe_regex (numpy, regex) when nothing used it."""
    mod = sys.modules.get("probe.analysis.safe_regex")
    return mod is not None and isinstance(e, mod.RegexTimeout)


def main(argv: list[str] | None = None) -> int:
    try:  # the CPU thread policy first: its OpenMP settings only count before torch loads (set when torch loads)
        defer_thread_policy()
    except ProbeError as e:
        print(f"probe: error: {e}", file=sys.stderr)
        return 2
    words = list(argv) if argv is not None else sys.argv[1:]
    chosen = chosen_command(words)
    parser = build_parser([chosen] if chosen else [])
    args = parser.parse_args(words)
    args._argv = words  # which options were typed (resume overrides)
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
        elif _is_regex_timeout(e):  # raised here with an option, not a parameter
            from probe.analysis.safe_regex import ENV_TIMEOUT
            text, code = e.message(f"--regex-timeout SECONDS (or {ENV_TIMEOUT}=SECONDS)"), 2
        elif isinstance(e, ProbeError):
            text, code = str(e), 2
        else:  # disk full, no memory, a library's own error, a fault: named, never empty
            text, code = cli_errors.describe(e)
        print(f"probe {args.command}: error: {cli_errors.one_line(text) or type(e).__name__}", file=sys.stderr)
        return code


if __name__ == "__main__":
    raise SystemExit(main())
