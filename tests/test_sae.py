"""Sparse autoencoders (probe.sae, `probe sae`): the model, its hand-written step, training, the folder, metrics."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from probe.checks import ParamError
from probe.cli.main import main
from probe.errors import ProbeError
from probe.model import checkpoint
from probe.names import Site
from probe.record.recorder import record, record_arrays, resolve_text
from probe.record.recording import Recording
from probe.sae import io
from probe.sae.data import RecordingRows, StreamRows
from probe.sae.metrics import held_out_metrics, loss_recovered, reconstruct_hook, site_mean
from probe.sae.model import TopKSAE, geometric_median
from probe.sae.step import sae_grads
from probe.sae.train import train_sae
from tests.synthetic_recordings import make_recording

SMALL = dict(d_sae=32, k=4, batch_size=128, lr=3e-3, dead_after=300)


@pytest.fixture(scope="module")
def rec(tiny_lstm, shakespeare_text, tmp_path_factory) -> Recording:
    """The tiny 2x16 LSTM recorded over 4,000 characters (of its validation part of Shakespeare)."""
    return record(tiny_lstm, text=shakespeare_text[30000:34000], out=tmp_path_factory.mktemp("sae") / "rec")


@pytest.fixture(scope="module")
def trained(rec, tmp_path_factory):
    """Two epochs of a small SAE on L1.h, loss recovered included."""
    out = tmp_path_factory.mktemp("sae") / "L1h"
    return train_sae(rec, "L1.h", epochs=2, seed=0, out=out, **SMALL)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file
    return load_file(str(path / io.WEIGHTS))


# --------------------------------------------------------------------------- the model and its step

def test_hand_written_gradients_equal_autograd():
    torch.manual_seed(0)
    sae = TopKSAE(16, 64, 4, seed=1).double()
    with torch.no_grad():
        sae.b_dec += 0.1
        sae.b_enc += 0.05
    x = torch.randn(50, 16, dtype=torch.float64)
    dead = torch.zeros(64, dtype=torch.bool)
    dead[::3] = True
    out = sae_grads(sae, x, 3.0, dead, k_aux=8, aux_coef=0.5)
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    v, i = pre.topk(4, 1)
    x_hat = F.embedding_bag(i, sae.W_dec, per_sample_weights=v.relu(), mode="sum") + sae.b_dec
    loss = (x - x_hat).square().sum() / (50 * 3.0)
    e = (x - x_hat).detach()
    di = torch.nonzero(dead).view(-1)
    va, ia = pre[:, di].topk(8, 1)
    e_hat = F.embedding_bag(di[ia], sae.W_dec, per_sample_weights=va.relu(), mode="sum")
    aux = (e - e_hat).square().sum() / e.square().sum()
    (loss + 0.5 * aux).backward()
    assert out.fvu == pytest.approx(loss.item(), rel=1e-12) and out.aux == pytest.approx(aux.item(), rel=1e-12)
    assert out.aux > 0
    for name, p in sae.named_parameters():
        assert torch.allclose(out.grads[name], p.grad, atol=1e-12, rtol=1e-9), name
    fired = torch.zeros(64, dtype=torch.bool)
    fired[i[v > 0]] = True
    assert torch.equal(out.fired, fired)


def test_encoder_is_the_formula_and_decoders_agree():
    sae = TopKSAE(8, 20, 3, seed=2).requires_grad_(False)
    with torch.no_grad():
        sae.b_enc.normal_()
        sae.b_dec.normal_()
    x = torch.randn(40, 8)
    z = sae.encode(x)
    pre = ((x.double() - sae.b_dec.double()) @ sae.W_enc.double() + sae.b_enc.double()).numpy()
    want = np.zeros_like(pre)
    for r in range(len(pre)):
        top = np.argsort(-pre[r])[:3]
        want[r, top] = np.maximum(pre[r, top], 0)
    assert np.allclose(z.numpy(), want, atol=1e-5)
    assert ((z > 0).sum(1) <= 3).all() and (z >= 0).all() and (want == 0).sum() > 0
    x_hat, z2 = sae(x)
    assert torch.equal(z, z2)
    assert torch.allclose(sae.decode(z), x_hat, atol=1e-5) and torch.allclose(sae.reconstruct(x), x_hat)
    assert sae.encode(x.view(4, 10, 8)).shape == (4, 10, 20)
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(20)) and torch.equal(sae.W_enc, sae.W_dec.t())


def test_geometric_median_resists_outliers():
    x = torch.cat([torch.randn(200, 3) * 0.01 + 1.0, torch.full((20, 3), 1000.0)])
    assert torch.allclose(geometric_median(x), torch.ones(3), atol=0.05)


# --------------------------------------------------------------------------- training

def test_recovers_planted_sparse_directions(tmp_path):
    rng = np.random.default_rng(0)
    n, d, m = 12000, 32, 16
    D = rng.standard_normal((m, d))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    codes = (rng.random((n, m)) < 2 / m) * (rng.exponential(1.0, (n, m)) + 0.5)
    X = codes @ D + 0.02 * rng.standard_normal((n, d)) + 0.3
    text = "".join(rng.choice(list("abcdefgh "), n))
    make_recording(tmp_path / "rec", text, {"L0.h": X.astype(np.float32)}, hidden=d, num_layers=1, model="gru")
    res = train_sae(tmp_path / "rec", "L0.h", d_sae=64, k=4, epochs=8, batch_size=256, lr=3e-3,
                    out=tmp_path / "sae", evaluate_loss=False)
    cos = D @ res.sae.W_dec.detach().numpy().T
    assert cos.max(1).min() > 0.9, np.round(cos.max(1), 3)
    assert res.metrics["fvu"] < 0.05 and "loss_recovered" not in res.metrics
    assert 3 <= res.metrics["mean_l0"] <= 4


def test_trained_folder_metrics_and_loss_recovered(trained, rec):
    m = trained.metrics
    held = rec.n_rows - int(round(rec.n_rows * 0.9))
    assert m["rows"] == held == 400 and 0 < m["fvu"] < 1 and 0 < m["mean_l0"] <= 4
    lr = m["loss_recovered"]
    assert lr["symbols"] == held and all(np.isfinite([lr["clean_bits"], lr["recon_bits"], lr["ablated_bits"]]))
    gap = lr["ablated_bits"] - lr["clean_bits"]
    assert np.isclose(lr["recovered"], (lr["ablated_bits"] - lr["recon_bits"]) / gap)
    loaded = io.load_sae(trained.path)
    assert loaded.site == Site(1, "h") and loaded.name == trained.path.name and loaded.metrics == m
    assert loaded.source["weights_sha256"] == rec.meta["checkpoint"]["sha256"]
    assert loaded.source["cell"] == "lstm" and loaded.source["rnn_size"] == 16
    cfg = json.loads((trained.path / "cfg.json").read_text())
    assert (cfg["architecture"], cfg["d_in"], cfg["d_sae"], cfg["k"], cfg["hook_name"]) == ("topk", 16, 32, 4, "L1.h")
    assert not loaded.sae.training and loaded.sae.W_enc.dtype == torch.float32
    assert torch.equal(loaded.sae.W_enc, trained.sae.W_enc)
    # the metrics are those of the held-out rows, recomputed
    again = held_out_metrics(loaded.sae, rec.array("L1.h"), rec.n_rows - held, rec.n_rows)
    assert again.fvu == pytest.approx(m["fvu"]) and again.dead == m["dead_features"]
    # a feature's activation is the encoder on the recorded state
    x = torch.from_numpy(rec.get(1, "h", 100, 300))
    z = loaded.sae.encode(x)
    j = int(z.sum(0).argmax())
    pre = (x - loaded.sae.b_dec) @ loaded.sae.W_enc[:, j] + loaded.sae.b_enc[j]
    on = z[:, j] > 0
    assert on.any() and torch.allclose(z[on, j], pre[on], atol=1e-6) and (z[~on, j] == 0).all()
    io.check_compatible(loaded, rec)


def test_deterministic_for_a_seed_and_resume_equals_uninterrupted(trained, rec, tmp_path, monkeypatch):
    again = train_sae(rec, "L1.h", epochs=2, seed=0, out=tmp_path / "again", evaluate_loss=False, **SMALL)
    assert all(torch.equal(a, b) for a, b in zip(_weights(trained.path).values(), _weights(again.path).values()))
    assert any(h["aux_loss"] > 0 for h in trained.history)  # AuxK ran (dead latents after 300 rows)
    other = train_sae(rec, "L1.h", epochs=1, seed=1, out=tmp_path / "other", evaluate_loss=False, **SMALL)
    assert not torch.equal(other.sae.W_dec, again.sae.W_dec)
    real, saves = io.save_sae, []

    def killed_after_one_epoch(*a, **kw):  # the run is killed after its first epoch was written
        if saves:
            raise KeyboardInterrupt
        saves.append(1)
        return real(*a, **kw)
    monkeypatch.setattr(io, "save_sae", killed_after_one_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_sae(rec, "L1.h", epochs=2, seed=0, out=tmp_path / "resumed", evaluate_loss=False, **SMALL)
    monkeypatch.undo()
    assert json.loads((tmp_path / "resumed" / "trainer.json").read_text())["epochs_done"] == 1
    res = train_sae(rec, "L1.h", epochs=2, seed=0, out=tmp_path / "resumed", resume=True, evaluate_loss=False,
                    **SMALL)
    assert res.resumed_from == 1 and res.epochs == 2 and res.steps == trained.steps
    w1, w2 = _weights(trained.path), _weights(tmp_path / "resumed")
    assert all(torch.equal(w1[k], w2[k]) for k in io.PARAMS)
    with pytest.raises(ParamError, match="trained with k=4"):
        train_sae(rec, "L1.h", epochs=3, seed=0, out=tmp_path / "resumed", resume=True,
                  **dict(SMALL, k=5))


@pytest.mark.parametrize("budget", [1 << 20, 3 * 64 * 4 * 4])  # everything at once; windows of 3 blocks
def test_recording_rows_are_each_row_once_an_epoch_in_a_seeded_order(budget):
    data = np.arange(1000 * 4, dtype=np.float32).reshape(1000, 4)
    rows = RecordingRows(data, 100, 900, block_rows=64, budget_bytes=budget)
    epoch0 = [b.numpy() for b in rows.batches(0, 7, 96)]
    assert [len(b) for b in epoch0] == [96] * 8 + [32]
    seen = np.concatenate(epoch0)[:, 0] / 4
    assert sorted(seen) == list(range(100, 900)) and not np.array_equal(seen, np.arange(100, 900))
    again = np.concatenate([b.numpy() for b in rows.batches(0, 7, 96)])
    assert np.array_equal(np.concatenate(epoch0), again)
    assert not np.array_equal(again, np.concatenate([b.numpy() for b in rows.batches(1, 7, 96)]))
    assert rows.sample(50, 0).shape == (50, 4)


def test_stream_rows_are_the_models_states(tiny_lstm):
    ck = checkpoint.load(tiny_lstm)
    tt = resolve_text(ck, None, part="train")
    ids = tt.ids[:600]
    rows = StreamRows(ck.model, ids, Site(1, "h"), streams=1, steps=128, warmup=0)
    got = np.concatenate(list(rows.blocks()))
    want = record_arrays(ck.model, ck.vocab, tt.text[:600], gates=False)["L1.h"]
    assert got.shape == (600, 16) and np.allclose(got, want, atol=1e-5)
    two = StreamRows(ck.model, ids, Site(1, "h"), streams=2, steps=64, warmup=50, max_rows=400)
    assert two.n_rows == 400 and sum(len(b) for b in two.blocks()) == 400
    batches = list(two.batches(0, 0, 128))
    assert [len(b) for b in batches] == [128, 128, 128, 16]


def test_stream_training_runs_and_says_so(rec, tiny_lstm, tmp_path):
    res = train_sae(rec, "L1.h", epochs=1, seed=0, out=tmp_path / "s", stream=tiny_lstm, stream_max_rows=2000,
                    evaluate_loss=False, **SMALL)
    src = io.load_sae(res.path).source
    assert src["stream"]["rows_per_epoch"] == 2000 and src["train_rows"] is None and res.steps == 16


# --------------------------------------------------------------------------- loss recovered

def test_loss_recovered_is_one_for_identity_and_zero_for_the_mean(tiny_lstm, rec):
    model = checkpoint.load(tiny_lstm).model
    ids = np.asarray(rec.array("ids"))[:800]
    for site in (Site(1, "h"), Site(0, "c")):
        ident = loss_recovered(model, ids, site, lambda x: x)
        assert ident.recovered == 1.0 and ident.recon_bits == ident.clean_bits != ident.ablated_bits
        mean = site_mean(model, torch.as_tensor(ids.astype(np.int64)), site)
        flat = loss_recovered(model, ids, site, lambda x: mean.expand_as(x).clone(), mean=mean)
        assert flat.recovered == 0.0 and flat.to_dict()["recovered"] == 0.0
    blowup = loss_recovered(model, ids[:200], Site(1, "c"), lambda x: torch.full_like(x, float("nan")))
    d = blowup.to_dict()
    assert blowup.diverged and d["recon_bits"] is None and d["recovered"] is None and d["clean_bits"] is not None
    json.dumps(d, allow_nan=False)
    sae = TopKSAE(16, 32, 4)
    hook = reconstruct_hook(sae, rows=[1])
    state = torch.randn(3, 16)
    before = state.clone()
    hook(state, 0)
    assert torch.equal(state[[0, 2]], before[[0, 2]]) and torch.allclose(state[1], sae.reconstruct(before[1:2])[0])


# --------------------------------------------------------------------------- the folder and bad input

def test_bad_input_is_one_line_and_writes_nothing(rec, tmp_path):
    out = tmp_path / "never"
    for kw, match in [(dict(site="L7.h"), "L7.h is not in recording"), (dict(site="L0.f"), "not a gate"),
                      (dict(site="L0.gates.f"), "not a gate"),
                      (dict(site="L0.q.x"), "bad array name"), (dict(k=33), "k is 33, more than"),
                      (dict(k=0), "k must be at least 1"), (dict(epochs=0), "epochs must be at least 1"),
                      (dict(lr=-1.0), "lr must be positive")]:
        args = dict(dict(site="L1.h", d_sae=32, k=4, epochs=1), **kw)
        with pytest.raises(ProbeError, match=match) as e:
            train_sae(rec, args.pop("site"), out=out, **args)
        assert "\n" not in str(e.value)
        assert not out.exists()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ProbeError, match="not an SAE folder"):
        train_sae(rec, "L1.h", out=tmp_path / "busy", overwrite=True, **SMALL)
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_an_existing_sae_is_kept_unless_asked_and_a_failed_save_keeps_the_last(rec, tmp_path, monkeypatch):
    out = tmp_path / "sae"
    (tmp_path / ".sae.tmp-999999999").mkdir()  # left by a process killed while saving
    train_sae(rec, "L1.h", epochs=1, out=out, evaluate_loss=False, **SMALL)
    assert not (tmp_path / ".sae.tmp-999999999").exists()
    with pytest.raises(ParamError, match="resume=True.*overwrite=True"):
        train_sae(rec, "L1.h", epochs=1, out=out, evaluate_loss=False, **SMALL)
    before = _weights(out)
    real = io.save_file

    def failing(tensors, path, *a, **kw):
        if Path(path).name == io.TRAINER_TENSORS:
            raise OSError(28, "No space left on device")
        return real(tensors, path, *a, **kw)
    monkeypatch.setattr(io, "save_file", failing)
    with pytest.raises(ProbeError, match="No space left"):
        train_sae(rec, "L1.h", epochs=2, out=out, resume=True, evaluate_loss=False, **SMALL)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sae"]
    after = _weights(out)
    assert all(torch.equal(before[k], after[k]) for k in io.PARAMS)
    assert json.loads((out / "trainer.json").read_text())["epochs_done"] == 1


def test_load_and_compatibility_refusals(trained, tmp_path, tiny_gru, shakespeare_text):
    with pytest.raises(ProbeError, match="no such SAE folder"):
        io.load_sae(tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "cfg.json").write_text("{not json")
    with pytest.raises(ProbeError, match="not valid JSON"):
        io.load_sae(bad)
    loaded = io.load_sae(trained.path)
    other = record(tiny_gru, text=shakespeare_text[:500], out=tmp_path / "gru-rec", gates=False)
    with pytest.raises(ProbeError, match="another|does not hold|trained on the states") as e:
        io.check_compatible(loaded, other)
    assert "\n" not in str(e.value)
    loaded.site = Site(1, "c")
    with pytest.raises(ProbeError, match="does not hold"):
        io.check_compatible(loaded, other)


def test_cli_prints_metrics_and_refuses_in_one_line(rec, tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["sae", str(rec.path), "--site", "L1.h", "--features", "32", "--k", "4", "--epochs", "1",
               "--batch-size", "256", "--quiet", "--out", str(out), "--json", str(tmp_path / "r.json"),
               "--no-resume-state"])
    printed = capsys.readouterr().out
    assert rc == 0 and "FVU" in printed and "loss recovered over 400 held-out symbols" in printed
    assert sorted(p.name for p in out.iterdir()) == ["cfg.json", "metrics.json", "probe.json",
                                                     "sae_weights.safetensors", "sparsity.safetensors"]
    assert json.loads((tmp_path / "r.json").read_text())["metrics"]["rows"] == 400
    for argv, match in [(["--site", "L5.h"], "L5.h is not in recording"), (["--site", "L1.h", "--k", "40"],
                        "--k is 40, more than"), (["--site", "L1.h", "--k", "0"], "--k must be at least 1"),
                        (["--site", "L1.h", "--resume"], "holds no resume state"),
                        (["--site", "L1.h"], "pass --resume to continue")]:
        rc = main(["sae", str(rec.path), "--features", "32", "--quiet", "--out", str(out), *argv])
        err = capsys.readouterr().err
        assert rc == 2 and match in err and err.count("\n") == 1 and "Traceback" not in err, err
    rc = main(["sae", str(rec.path), "--site", "L1.h", "--quiet", "--out", str(tmp_path / "n"), "--k", "0"])
    assert rc == 2 and not (tmp_path / "n").exists()
