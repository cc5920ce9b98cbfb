"""`record(layers=..., kinds=...)` / `probe record --layers --kinds`: only the arrays asked for, each bit for bit
what a full recording holds (oneDNN workspace gates and recomputed gates, one stream and several); the
recording knows its layers, and the analyses read it; the size is said before writing and checked."""
from __future__ import annotations

import shutil
from collections import namedtuple

import numpy as np
import pytest

from probe.analysis import concepts
from probe.analysis.neuron_card import neuron_card
from probe.analysis.neurons import find_neurons
from probe.checks import ParamError
from probe.cli.main import main
from probe.errors import ProbeError
from probe.record import onednn_gates
from probe.record.recorder import record
from probe.record.recording import Recording

ROWS = 3000
ALWAYS = {"topk_ids", "topk_probs", "loss_bits", "ids"}  # not layer arrays: recorded whatever the subset


@pytest.fixture(autouse=True)
def workspace_switch():
    onednn_gates._available = True
    yield
    onednn_gates._available = True


def _bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).tobytes()


def _same_as_full(part: Recording, full: Recording) -> None:
    assert part.meta["arrays"].keys() <= full.meta["arrays"].keys()
    for name in part.meta["arrays"]:
        a, b = part.array(name), full.array(name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert _bits(a) == _bits(b), f"{name} differs from the full recording's"


@pytest.mark.parametrize("gate_path", ["workspace", "recomputed"])
@pytest.mark.parametrize("streams", [1, 3])
def test_subset_arrays_are_bit_identical_to_a_full_recording(tiny_lstm, tmp_path, gate_path, streams):
    if gate_path == "recomputed":
        onednn_gates.disable()  # the recorder recomputes every gate with one matmul a layer
    opts = dict(max_chars=ROWS, chunk_size=256, streams=streams, warmup=40)
    full = record(tiny_lstm, out=tmp_path / "full", **opts)
    subsets = {"L1 c,f": dict(layers=[1], kinds=["c", "f"]),  # layer 0 skipped whole
               "L0 h": dict(layers=[0], kinds=["h"]),  # no c: the recurrence of layer 0 is not even run
               "L0,1 g,o": dict(kinds=["g", "o"])}  # gates only (streams: no h or c to measure deviation on)
    for label, sub in subsets.items():
        part = record(tiny_lstm, out=tmp_path / label.replace(" ", "_").replace(",", "-"), **opts, **sub)
        want = {f"L{l}.{k}" if k in "hc" else f"L{l}.gates.{k}"
                for l in sub.get("layers", [0, 1]) for k in sub["kinds"]}
        assert set(part.meta["arrays"]) == want | ALWAYS, label
        _same_as_full(part, full)
        assert part.meta["layers"] == sub.get("layers", [0, 1]) and part.meta["kinds"] == sub["kinds"]
    assert onednn_gates._available is (gate_path == "workspace")  # the path asked for was the one taken
    if streams > 1:
        dev_full = full.meta["deviation"]
        dev_l0h = Recording.open(tmp_path / "L0_h").meta["deviation"]
        assert dev_full["h"]["max_abs"] >= dev_l0h["max_abs"] > 0  # measured on what it holds
        assert Recording.open(tmp_path / "L0-1_g-o").meta["deviation"]["measured"] is False


def test_gru_subset_is_bit_identical(tiny_gru, tmp_path):
    full = record(tiny_gru, out=tmp_path / "full", max_chars=ROWS, chunk_size=256)
    part = record(tiny_gru, out=tmp_path / "part", max_chars=ROWS, chunk_size=256, layers=[1], kinds=["z", "h"])
    assert set(part.meta["arrays"]) == {"L1.h", "L1.gates.z"} | ALWAYS
    assert part.meta["kinds"] == ["h", "z"]  # the cell's order, whatever the order asked
    _same_as_full(part, full)


def test_a_subset_recording_knows_its_layers_and_the_analyses_read_it(tiny_lstm, tmp_path):
    rec = record(tiny_lstm, out=tmp_path / "r", max_chars=ROWS, layers=[1], kinds=["h", "c"])
    assert rec.layers == [1] and rec.kinds == ["h", "c"] and rec.num_layers == 2
    assert rec.arrays_for() == ["L1.h", "L1.c"] and rec.arrays_for(["c"]) == ["L1.c"]
    units = rec.all_units()
    assert len(units) == 2 * 16 and {u.layer for u in units} == {1}
    assert rec.check_unit("L1.c.3").name == "L1.c.3"
    with pytest.raises(ProbeError, match="holds layers 1 only"):
        rec.check_unit("L0.c.3")
    with pytest.raises(ProbeError, match="holds kinds h, c"):
        rec.check_unit("L1.f.3")
    with pytest.raises(ProbeError, match="layers L0..L1"):
        rec.check_unit("L2.c.3")
    assert "layers 1" in repr(rec)
    found = find_neurons(rec, concepts.get("column"), n_perm=10)
    assert set(found.table["unit"].str.slice(0, 2)) == {"L1"} and len(found.table) == 32
    with pytest.raises(ProbeError, match="no layer 0"):
        find_neurons(rec, concepts.get("column"), layers=[0], n_perm=10)
    card = neuron_card(rec, "L1.h.5", checkpoint=tiny_lstm)
    assert card.unit == "L1.h.5" and card.promoted  # the top layer's h: its output weights too
    from probe.analysis.hypothesis import rank_units
    from probe.analysis.probes import fit_probes
    assert set(rank_units(rec, 100, 120).unit.str.slice(0, 2)) == {"L1"}  # the recorded layers by default
    assert set(fit_probes(rec, concepts.get("column"), max_train=500, max_test=200, sparse=False).table.layer) == {1}
    gates = record(tiny_lstm, out=tmp_path / "g", max_chars=ROWS, layers=[1])
    from probe.analysis.saturation import gate_saturation
    assert set(gate_saturation(gates).layer) == {1}
    full = record(tiny_lstm, out=tmp_path / "full", max_chars=ROWS)
    assert full.layers == [0, 1] and full.kinds == ["h", "c", "i", "f", "g", "o"]
    np.testing.assert_array_equal(neuron_card(full, "L1.c.7").hist_counts, neuron_card(rec, "L1.c.7").hist_counts)


def test_reuse_needs_the_same_subset(tiny_lstm, tmp_path):
    out = tmp_path / "r"
    first = record(tiny_lstm, out=out, max_chars=500, layers=[1], kinds=["h", "c"], reuse=True)
    assert not first.reused
    again = record(tiny_lstm, out=out, max_chars=500, layers=[1], kinds=["c", "h"], reuse=True)
    assert again.reused  # the same subset, however spelled
    other = record(tiny_lstm, out=out, max_chars=500, layers=[0, 1], kinds=["h", "c"], reuse=True)
    assert not other.reused and other.layers == [0, 1]
    whole = record(tiny_lstm, out=out, max_chars=500, reuse=True)
    assert not whole.reused and whole.kinds == ["h", "c", "i", "f", "g", "o"]
    assert record(tiny_lstm, out=out, max_chars=500, reuse=True).reused


def test_a_recording_from_before_subsets_is_reused_as_a_full_one(tiny_lstm, tmp_path):
    import json
    out = tmp_path / "old"
    record(tiny_lstm, out=out, max_chars=500, gates=False)
    meta = json.loads((out / "meta.json").read_text())
    del meta["layers"], meta["kinds"]  # as older versions wrote it
    (out / "meta.json").write_text(json.dumps(meta))
    old = Recording.open(out)
    assert old.layers == [0, 1] and old.kinds == ["h", "c"]
    assert record(tiny_lstm, out=out, max_chars=500, gates=False, reuse=True).reused
    assert record(tiny_lstm, out=out, max_chars=500, kinds=["h", "c"], reuse=True).reused


def test_bad_subsets_are_refused_before_anything_is_written(tiny_lstm, tmp_path):
    for kw, msg in ((dict(layers=[2]), "layers names layer 2, but the model has layers 0..1"),
                    (dict(layers=[]), "layers is empty"),
                    (dict(kinds=["x"]), "kinds 'x' is not a kind of this LSTM"),
                    (dict(kinds=[]), "kinds is empty"),
                    (dict(kinds=["f"], gates=False), "kinds names gates \\(f\\), but gates=False"),
                    (dict(layers="0,1"), "layers must be a list")):
        with pytest.raises(ParamError, match=msg):
            record(tiny_lstm, out=tmp_path / "bad", max_chars=100, **kw)
    assert list(tmp_path.iterdir()) == []


def test_meta_json_with_a_wrong_subset_is_refused(tiny_lstm, tmp_path):
    import json
    out = tmp_path / "r"
    record(tiny_lstm, out=out, max_chars=300, layers=[1], kinds=["h"])
    meta = json.loads((out / "meta.json").read_text())
    meta["layers"] = [0, 1]
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ProbeError, match="name L0.h, which 'arrays' lacks"):
        Recording.open(out)


# --------------------------------------------------------------------------- the command line, and the disk

def _error(capsys, code: int) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("probe record: error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_cli_records_a_subset_and_says_its_exact_size_first(tiny_lstm, tmp_path, capsys):
    out = tmp_path / "rec"
    code = main(["record", str(tiny_lstm), "--out", str(out), "--max-chars", "2000", "--layers", "1",
                 "--kinds", "h,c"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    rec = Recording.open(out)
    assert set(rec.meta["arrays"]) == {"L1.h", "L1.c"} | ALWAYS
    on_disk = sum(p.stat().st_size for p in out.iterdir() if p.name != "meta.json")
    # rows x (16 x 2 B for h + 16 x 4 B for c + 5 x 2 B top-k ids + 5 x 2 B probs + 4 B loss + 4 B id)
    n = rec.n_rows  # the tiny model's validation split: 1,000 characters
    assert n == 1000 and on_disk == n * (32 + 64 + 10 + 10 + 4 + 4) + 6 * 128 + n  # six .npy headers, text.txt
    assert lines[0] == f"recording 1,000 rows: 125.8 KB in {out}"
    assert lines[1].startswith("recorded 1,000 rows")


def test_disk_plan_counts_every_file_to_the_byte(tiny_byte_lstm, tmp_path):
    plans = []
    rec = record(tiny_byte_lstm, out=tmp_path / "b", max_chars=1500, dtype="float32", topk=3, on_start=plans.append)
    (plan,) = plans
    sizes = {p.name: p.stat().st_size for p in rec.path.iterdir() if p.name != "meta.json"}
    assert plan.files == sizes and plan.total == sum(sizes.values()) and "char_of_row.npy" in sizes
    assert plan.rows == 1500 and plan.to_dict()["bytes"] == plan.total


FakeUsage = namedtuple("FakeUsage", "total used free")


def test_a_disk_without_room_is_refused_in_one_line(tiny_lstm, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: FakeUsage(10 ** 9, 10 ** 9 - 50_000, 50_000))
    out = tmp_path / "recs" / "wiki"
    code = main(["record", str(tiny_lstm), "--out", str(out), "--max-chars", "5000"])
    err = _error(capsys, code)
    assert "not enough disk for the recording" in err and "50.0 KB free" in err and "--layers" in err
    assert not (tmp_path / "recs").exists() or list((tmp_path / "recs").iterdir()) == []
    with pytest.raises(ParamError, match=r"record fewer arrays \(layers, kinds\)"):
        record(tiny_lstm, out=out, max_chars=5000)
    # the free space counts: enough of it (the files and room for meta.json) and it records
    monkeypatch.setattr(shutil, "disk_usage", lambda path: FakeUsage(10 ** 12, 0, 10 ** 10))
    assert main(["record", str(tiny_lstm), "--out", str(out), "--max-chars", "5000"]) == 0


def test_cli_subset_options_refuse_nonsense_in_one_line(tiny_lstm, tmp_path, capsys):
    out = tmp_path / "x"
    err = _error(capsys, main(["record", str(tiny_lstm), "--out", str(out), "--layers", "0,7"]))
    assert "--layers names layer 7" in err
    err = _error(capsys, main(["record", str(tiny_lstm), "--out", str(out), "--kinds", "h,f", "--no-gates"]))
    assert "--no-gates" in err and "--kinds" in err
    err = _error(capsys, main(["record", str(tiny_lstm), "--out", str(out), "--kinds", "h,q"]))
    assert "--kinds 'q' is not a kind" in err
    with pytest.raises(SystemExit):
        main(["record", str(tiny_lstm), "--out", str(out), "--layers", "one"])
    assert not out.exists()
