"""probe neuron: a neuron card in the terminal."""
from __future__ import annotations

import argparse

from probe.checks import check_at_least
from probe.cli.commands._sae_args import add_sae_argument, open_source

from probe.cli.json_out import emit_json

NAME = "neuron"
HELP = "show one unit: top contexts (both tails), histogram, quantiles, promoted characters"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recording", help="a recording folder")
    p.add_argument("unit", help="a unit name, e.g. L1.c.123 or L0.f.12 (with --sae a feature, e.g. L2.h.f123)")
    add_sae_argument(p, "units")
    p.add_argument("--top", type=int, default=10, help="contexts per tail (default 10)")
    p.add_argument("--window", type=int, default=40, help="characters of context before the peak (default 40)")
    p.add_argument("--checkpoint", default=None, help="checkpoint for the output weights (default: the recording's)")
    p.add_argument("--json", metavar="FILE", help="write the card as JSON (- for stdout)")


def show(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def show_symbol(s: str) -> str:
    """A vocabulary symbol quoted: ' ', '\\n', 'a'; byte symbols arrive already escaped (\\xe1)."""
    return repr(s) if len(s) == 1 else f"'{s}'"


def _line(c: dict, window: int) -> str:
    left = show(c["left"])[-window:]
    return f"{c['activation']:>9.3f}  {left:>{window}}\u00ab{show(c['char'])}\u00bb{show(c['right'])}"


def atlas_line(entry: dict) -> str:
    """The unit's atlas entry in one line: best concept, held-out score against chance, the runner-up."""
    sign = "" if entry.get("sign", 1) >= 0 else " (negatively)"
    verdict = "explained" if entry.get("explained") else "not above chance"
    line = (f"atlas: {entry['concept']}{sign}, held-out {entry['metric']} {entry['score']:.3f} vs chance "
            f"{entry['chance']:.3f}, family-wise p {entry['p_value']:.3f}: {verdict}")
    if entry.get("second_concept"):
        line += f"; next best {entry['second_concept']} ({entry['second_score']:.3f})"
    if entry.get("abl_delta") is not None and entry.get("abl_delta") == entry.get("abl_delta"):
        line += f"; ablation {entry['abl_delta']:+.3f} bits/char ({entry.get('abl_where')})"
    return line


def run(args: argparse.Namespace) -> int:
    from probe.analysis.neuron_card import neuron_card
    check_at_least(top=(args.top, 1), window=(args.window, 1))
    rec = open_source(args.recording, args)
    card = neuron_card(rec, args.unit, n_top=args.top, window=args.window, checkpoint=args.checkpoint)
    if args.json and emit_json(args.json, card.to_dict()):
        return 0
    print(f"{card.unit} in {rec.path} ({card.n_rows:,} rows): mean {card.mean:.3f}, std {card.std:.3f}, "
          f"density {card.density:.3f} (fraction of steps at least half as far from 0 as the extreme)")
    if card.atlas is not None:
        print(atlas_line(card.atlas))
    print("quantiles: " + "  ".join(f"{int(q * 100) if q * 100 == int(q * 100) else q * 100}%:{v:.3f}"
                                    for q, v in card.quantiles.items()))
    groups = [int(card.hist_counts[i:i + 5].sum()) for i in range(0, len(card.hist_counts), 5)]
    peak = max(max(groups), 1)
    print("histogram (from the bin edge):")
    for lo, c in zip(card.hist_edges[:-1:5], groups):
        print(f"  {lo:>9.3f} {'#' * int(round(40 * c / peak)):<40} {c}")
    w = min(args.window, 60)
    print("\nhighest activations (the peak character in \u00ab \u00bb):")
    for c in card.top:
        print(_line(c, w))
    print("\nlowest activations:")
    for c in card.bottom:
        print(_line(c, w))
    if card.promoted:
        print("\npromotes next: " + "  ".join(f"{show_symbol(s)}:{v:+.2f}" for s, v in card.promoted))
        print("suppresses next: " + "  ".join(f"{show_symbol(s)}:{v:+.2f}" for s, v in card.suppressed))
    elif card.note:
        print(f"\n({card.note})")
    return 0
