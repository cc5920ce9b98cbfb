"""Names of units and recorded arrays: one type, one table, every spelling in one place.

Four words are kept apart across probe:

- cell: the recurrent cell type, `lstm`, `gru` or `rnn` (`ModelConfig.model`, `Recording.cell`);
- kind: what a unit holds: state `h`, `c`, or a gate (LSTM `i f g o`, GRU `r z n`);
- encoding: what a vocabulary's symbols are, `byte` or `char` (`Vocab.encoding`);
- label type: what a concept's labels are, binary, continuous or integer.

A unit and the array it lives in are spelled:

    Unit(1, "c", 123).name   L1.c.123    (CLI, API, dashboard, tables)
    Unit(1, "c", 123).slug   L1_c_123    (file names in reports)
    Site(0, "f").array       L0.gates.f  (recorded array; file L0.gates.f.npy)
    Site(0, "f").label       L0.f        (plot labels: one layer's one kind)

Features of a sparse autoencoder (probe.sae) trained on a state site are units too: their kind is the
site's kind plus `.f` (`h.f`, `c.f`), and the index follows the `f` with no dot:

    Unit(2, "h.f", 123).name  L2.h.f123   (feature 123 of the SAE on L2.h)
    Unit(2, "h.f", 123).slug  L2_h_f123
    Site(2, "h.f").array      L2.h.f      (computed from L2.h by the encoder, never stored)
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from probe.errors import ProbeError

CELLS = ("lstm", "gru", "rnn")
# Gates of each cell, in the order PyTorch stores them in the weights.
GATES: dict[str, tuple[str, ...]] = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n"), "rnn": ()}
STATES: dict[str, tuple[str, ...]] = {"lstm": ("h", "c"), "gru": ("h",), "rnn": ("h",)}
TANH_GATES = frozenset({"g", "n"})  # gates in (-1, 1); the others are sigmoids in (0, 1)
ARRAYS = ("ids", "char_of_row", "topk_ids", "topk_probs", "loss_bits")  # the recording's other arrays

FEATURE = ".f"  # the suffix of a feature kind: `h.f` holds the features of an SAE on the h site
_UNIT = re.compile(r"^L(\d+)\.([a-z])\.(\d+)$")
_FEATURE_UNIT = re.compile(r"^L(\d+)\.([hc])\.f(\d+)$")
_ARRAY = re.compile(r"^L(\d+)\.(?:gates\.)?([a-z])$")
_FEATURE_ARRAY = re.compile(r"^L(\d+)\.([hc])\.f$")


def is_feature(kind: str) -> bool:
    """True for a feature kind (`h.f`, `c.f`)."""
    return kind.endswith(FEATURE)


def feature_kind(kind: str) -> str:
    """`h` -> `h.f`: the kind of the features of an SAE trained on a state of kind `kind`."""
    if kind not in ("h", "c"):
        raise ProbeError(f"no features of kind {kind!r}: sparse autoencoders are trained on a state, h or c")
    return kind + FEATURE


def kinds(cell: str, gates: bool = True) -> tuple[str, ...]:
    """The unit kinds a cell has: states, then (with `gates`) its gates."""
    return STATES[cell] + (GATES[cell] if gates else ())


@dataclass(frozen=True, order=True)
class Site:
    """One layer's one kind: the H units recorded in one array."""

    layer: int
    kind: str  # h, c, or a gate letter

    @property
    def array(self) -> str:
        """`L1.c` for states, `L0.gates.f` for gates (the .npy file name without suffix)."""
        return array_name(self.layer, self.kind)

    @property
    def label(self) -> str:
        """`L1.c`, `L0.f`: short form for plots and tables."""
        return f"L{self.layer}.{self.kind}"

    @property
    def is_feature(self) -> bool:
        """True for the features of an SAE (`L2.h.f`)."""
        return is_feature(self.kind)

    @property
    def base(self) -> "Site":
        """The state site features are computed from (`L2.h.f` -> `L2.h`); a state site itself otherwise."""
        return Site(self.layer, self.kind[:-len(FEATURE)]) if self.is_feature else self

    @property
    def features(self) -> "Site":
        """The site of the features of an SAE on this state site (`L2.h` -> `L2.h.f`)."""
        return Site(self.layer, feature_kind(self.kind))

    def unit(self, index: int) -> "Unit":
        return Unit(self.layer, self.kind, int(index))

    def units(self, n: int) -> list["Unit"]:
        return [Unit(self.layer, self.kind, i) for i in range(n)]

    def __str__(self) -> str:
        return self.label


@dataclass(frozen=True, order=True)
class Unit:
    """One unit: `L1.c.123` is the cell state of layer 1, index 123."""

    layer: int
    kind: str  # h, c, or a gate letter
    index: int

    @property
    def name(self) -> str:
        if is_feature(self.kind):
            return f"L{self.layer}.{self.kind}{self.index}"
        return f"L{self.layer}.{self.kind}.{self.index}"

    @property
    def is_feature(self) -> bool:
        """True for a feature of an SAE (`L2.h.f123`)."""
        return is_feature(self.kind)

    @property
    def site(self) -> Site:
        return Site(self.layer, self.kind)

    @property
    def array(self) -> str:
        return array_name(self.layer, self.kind)

    @property
    def slug(self) -> str:
        """`L1_c_123` (a feature: `L2_h_f123`): the name where a dot would confuse a file name."""
        if is_feature(self.kind):
            return f"L{self.layer}_{self.kind[:-len(FEATURE)]}_f{self.index}"
        return f"L{self.layer}_{self.kind}_{self.index}"

    def __str__(self) -> str:
        return self.name


def array_name(layer: int, kind: str) -> str:
    """`L1.c` for states, `L0.gates.f` for gates, `L2.h.f` for the features of an SAE on L2.h."""
    return f"L{layer}.{kind}" if kind in ("h", "c") or is_feature(kind) else f"L{layer}.gates.{kind}"


def unit_name(layer: int, kind: str, index: int) -> str:
    """`L1.c.123`."""
    return Unit(int(layer), kind, int(index)).name


def parse_unit(name: str) -> Unit:
    """`L1.c.123` -> Unit(1, 'c', 123), `L2.h.f7` -> Unit(2, 'h.f', 7); a ProbeError for anything else."""
    text = str(name).strip()
    m = _UNIT.match(text)
    if m:
        return Unit(int(m.group(1)), m.group(2), int(m.group(3)))
    m = _FEATURE_UNIT.match(text)
    if m:
        return Unit(int(m.group(1)), feature_kind(m.group(2)), int(m.group(3)))
    raise ProbeError(f"bad unit name {name!r}: expected L<layer>.<kind>.<index>, e.g. L1.c.123 or L0.f.12 "
                     f"(or a feature L<layer>.<h|c>.f<index>, e.g. L2.h.f123)")


def parse_array(name: str) -> Site:
    """`L1.c`, `L0.gates.f` or `L2.h.f` (features) -> Site; a ProbeError for anything else."""
    f = _FEATURE_ARRAY.match(str(name).strip())
    if f:
        return Site(int(f.group(1)), feature_kind(f.group(2)))
    m = _ARRAY.match(str(name).strip())
    if not m or (name.count(".") == 2) == (m.group(2) in ("h", "c")):
        raise ProbeError(f"bad array name {name!r}: expected L<layer>.h, L<layer>.c or L<layer>.gates.<gate> "
                         f"(or features L<layer>.<h|c>.f)")
    return Site(int(m.group(1)), m.group(2))
