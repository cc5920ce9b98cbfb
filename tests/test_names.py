"""probe.names: one spelling of every unit and array, and the tables of kinds per cell."""
from __future__ import annotations

import pytest

from probe.errors import ProbeError
from probe.names import GATES, STATES, Site, Unit, array_name, kinds, parse_array, parse_unit, unit_name


def test_a_unit_in_every_spelling():
    u = parse_unit(" L1.c.123 ")
    assert u == Unit(1, "c", 123) and str(u) == u.name == "L1.c.123"
    assert u.array == "L1.c" and u.slug == "L1_c_123" and u.site == Site(1, "c")
    g = Unit(0, "f", 12)
    assert g.array == "L0.gates.f" and g.site.label == "L0.f" and g.slug == "L0_f_12"
    assert unit_name(2, "h", 7) == "L2.h.7" and Site(2, "h").unit(7) == Unit(2, "h", 7)
    assert [x.name for x in Site(0, "z").units(2)] == ["L0.z.0", "L0.z.1"]


def test_arrays_parse_back_to_their_site():
    for site in (Site(0, "h"), Site(3, "c"), Site(1, "f"), Site(2, "n")):
        assert parse_array(site.array) == site and array_name(site.layer, site.kind) == site.array


@pytest.mark.parametrize("bad", ["L1.c", "1.c.3", "L1.cc.3", "L1.c.-3", "", "L0.gates.f.1"])
def test_bad_unit_names_are_refused(bad):
    with pytest.raises(ProbeError, match="bad unit name"):
        parse_unit(bad)


@pytest.mark.parametrize("bad", ["L0.f", "L0.gates.c", "L0.gates.h", "L0.c.1", "topk_ids"])
def test_bad_array_names_are_refused(bad):
    with pytest.raises(ProbeError, match="bad array name"):
        parse_array(bad)


def test_kinds_per_cell_in_pytorch_gate_order():
    assert kinds("lstm") == ("h", "c", "i", "f", "g", "o") and kinds("gru") == ("h", "r", "z", "n")
    assert kinds("rnn") == ("h",) and kinds("lstm", gates=False) == ("h", "c")
    assert set(GATES) == set(STATES) == {"lstm", "gru", "rnn"}


def test_units_sort_by_layer_then_kind_then_index():
    names = ["L1.h.2", "L0.h.10", "L0.c.3", "L0.h.9"]
    assert [u.name for u in sorted(map(parse_unit, names))] == ["L0.c.3", "L0.h.9", "L0.h.10", "L1.h.2"]


def test_a_feature_in_every_spelling():
    f = parse_unit(" L2.h.f123 ")
    assert f == Unit(2, "h.f", 123) and f.name == str(f) == "L2.h.f123" and f.is_feature
    assert f.array == "L2.h.f" and f.slug == "L2_h_f123" and f.site == Site(2, "h.f")
    assert f.site.base == Site(2, "h") and Site(2, "h").features == f.site and f.site.label == "L2.h.f"
    assert parse_unit(f.name) == f and parse_unit(Unit(0, "c.f", 0).name) == Unit(0, "c.f", 0)
    assert parse_array("L1.c.f") == Site(1, "c.f") and parse_array(Site(1, "c.f").array) == Site(1, "c.f")
    assert not parse_unit("L2.h.123").is_feature and Site(2, "h").base == Site(2, "h")
    assert [u.name for u in Site(0, "h.f").units(2)] == ["L0.h.f0", "L0.h.f1"]


@pytest.mark.parametrize("bad", ["L2.h.f", "L2.h.f.3", "L2.f.f3", "L2.hf3", "L2.h.f-1", "L2.gates.f.f3"])
def test_bad_feature_names_are_refused(bad):
    with pytest.raises(ProbeError, match="bad unit name"):
        parse_unit(bad)


def test_only_states_have_features():
    with pytest.raises(ProbeError, match="h or c"):
        Site(0, "f").features
    with pytest.raises(ProbeError, match="bad array name"):
        parse_array("L0.f.f")
