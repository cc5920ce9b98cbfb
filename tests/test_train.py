"""The trainer: batches, model, resume exactness, divergence handling, checkpoints, DDP."""
from __future__ import annotations

import json
import time
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from probe.model import checkpoint
from probe.data.batches import StreamBatches
from probe.errors import ProbeError
from probe.model.charrnn import CharRNN, ModelConfig
from probe.train.loop import TrainConfig, train, lr_at
from tests.conftest import ROOT, tiny_config


def weights(run: Path, which: str = "latest") -> dict[str, torch.Tensor]:
    return load_file(str(run / which / "model.safetensors"))


def test_batches_are_contiguous_streams_with_shifted_targets():
    ids = np.arange(1001)
    b = StreamBatches(ids, streams=4, seq_length=10)
    x0, y0 = b.get(0)
    x1, _ = b.get(1)
    assert x0.shape == (4, 10)
    assert torch.equal(y0, x0 + 1)  # targets are the next symbol
    assert torch.equal(x1[:, 0], x0[:, -1] + 1)  # the next batch continues each stream
    assert torch.equal(x0[1, 0] - x0[0, 0], torch.tensor(250))  # streams are contiguous quarters
    assert len(b) == 25


def test_batches_refuse_a_text_shorter_than_one_batch():
    with pytest.raises(ProbeError, match="too short"):
        StreamBatches(np.arange(50), streams=4, seq_length=20)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_model_exposes_every_layer_and_matches_state_shapes(kind):
    m = CharRNN(ModelConfig(vocab_size=11, model=kind, rnn_size=8, num_layers=3, embed_size=4)).eval()
    x = torch.randint(0, 11, (2, 5))
    logits, state, outs = m(x, return_layers=True)
    assert logits.shape == (2, 5, 11) and len(outs) == 3 and outs[2].shape == (2, 5, 8)
    h_last = state[2][0] if kind == "lstm" else state[2]
    assert torch.allclose(h_last[0], outs[2][:, -1])
    # carrying state across two halves equals one pass
    l1, s1 = m(x[:, :2])
    l2, _ = m(x[:, 2:], s1)
    assert torch.allclose(torch.cat([l1, l2], 1), logits, atol=1e-6)


def test_lstm_forget_gate_bias_is_one():
    m = CharRNN(ModelConfig(vocab_size=5, rnn_size=6, num_layers=2))
    for layer in m.layers:
        total = layer.bias_ih_l0 + layer.bias_hh_l0
        assert torch.allclose(total[6:12], torch.ones(6))


def test_cosine_schedule_warms_up_then_decays():
    cfg = TrainConfig(learning_rate=1.0, warmup_iters=10, min_lr_frac=0.1)
    assert lr_at(cfg, 0, 100) == pytest.approx(0.1)
    assert lr_at(cfg, 10, 100) == pytest.approx(1.0)
    assert lr_at(cfg, 100, 100) == pytest.approx(0.1)


def test_training_lowers_validation_loss_and_writes_history(tiny_lstm):
    meta = json.loads((tiny_lstm / "latest" / "checkpoint.json").read_text())
    vals = [m["val_loss"] for m in meta["metrics"]]
    assert len(vals) == 2 and vals[-1] < vals[0] < np.log(meta["model_config"]["vocab_size"]) + 0.5
    assert meta["samples"] and all(len(s["text"]) == 20 for s in meta["samples"])
    assert meta["data"]["split"]["val"][0] == meta["data"]["split"]["train"][1]
    assert (tiny_lstm / "best" / "checkpoint.json").exists()
    assert meta["best_val_loss"] == pytest.approx(min(vals))


def test_resume_after_an_interruption_ends_with_identical_weights(tmp_path, small_text_file):
    full = tmp_path / "full"
    train(tiny_config(small_text_file, full, max_iters=24, eval_every=8, dropout=0.2), progress=False)
    part = tmp_path / "part"
    r = train(tiny_config(small_text_file, part, max_iters=24, eval_every=8, dropout=0.2), stop_at=13,
              progress=False)
    assert r.step == 13
    train(TrainConfig(), resume=str(part), progress=False)
    a, b = weights(full), weights(part)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((part / "latest" / "checkpoint.json").read_text())["step"] == 24


def test_resumed_wall_time_adds_the_earlier_sessions_once(tmp_path, small_text_file):
    part = tmp_path / "part"
    train(tiny_config(small_text_file, part, max_iters=16, eval_every=2), stop_at=6, progress=False)
    before = json.loads((part / "latest" / "checkpoint.json").read_text())["metrics"][-1]["time"]
    t0 = time.time()
    train(TrainConfig(), resume=str(part), progress=False)
    took = time.time() - t0
    times = [m["time"] for m in json.loads((part / "latest" / "checkpoint.json").read_text())["metrics"]]
    assert before > 0 and times == sorted(times)
    assert times[-1] <= before + took + 0.01  # five evaluations after the resume, not five times the elapsed time


def test_resume_after_a_hard_kill_ends_with_identical_weights(tmp_path, small_text_file):
    """SIGKILL mid-run (no chance to save): resume from the last periodic checkpoint, end like an unbroken run."""
    args = ["--data", str(small_text_file), "--rnn-size", "16", "--num-layers", "2", "--embed-size", "8",
            "--batch-size", "4", "--seq-length", "20", "--max-iters", "100", "--eval-every", "5",
            "--warmup-iters", "5", "--dropout", "0.1", "--quiet", "--threads", "1"]
    full = tmp_path / "full"
    assert subprocess.run([sys.executable, "-m", "probe", "train", *args, "--out", str(full)], cwd=ROOT,
                          capture_output=True, timeout=300).returncode == 0
    killed = tmp_path / "killed"
    p = subprocess.Popen([sys.executable, "-m", "probe", "train", *args, "--out", str(killed)], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    meta = killed / "latest" / "checkpoint.json"
    while True:  # wait until a periodic checkpoint exists, then kill without warning
        try:
            p.wait(timeout=0.02)
            break
        except subprocess.TimeoutExpired:
            if meta.exists():
                p.kill()
                p.wait()
                break
    step = json.loads(meta.read_text())["step"]
    assert 0 < step < 100, "the run should have been killed before its end"
    r = subprocess.run([sys.executable, "-m", "probe", "train", "--resume", str(killed), "--quiet"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    a, b = weights(full), weights(killed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_nan_loss_rolls_back_and_lowers_the_learning_rate(tmp_path, small_text_file, monkeypatch, capsys):
    import probe.train.loop as T
    real = T.F.cross_entropy
    calls = {"n": 0}

    def poisoned(*a, **kw):
        loss = real(*a, **kw)
        if kw.get("reduction", "mean") == "mean":
            calls["n"] += 1
            if calls["n"] == 12:
                return loss * float("nan")
        return loss

    monkeypatch.setattr(T.F, "cross_entropy", poisoned)
    out = tmp_path / "nan"
    r = train(tiny_config(small_text_file, out, max_iters=20, eval_every=10), progress=True)
    err = capsys.readouterr().err
    assert "rolled back to step" in err and "x0.5" in err
    assert r.step == 20
    w = weights(out)
    assert all(torch.isfinite(v).all() for v in w.values())
    tj = json.loads((out / "latest" / "trainer.json").read_text())
    assert tj["lr_scale"] == 0.5 and tj["rollbacks"] == 1


def test_divergence_that_never_ends_stops_with_a_clear_error(tmp_path, small_text_file, monkeypatch):
    import probe.train.loop as T
    real = T.F.cross_entropy

    def always_nan(*a, **kw):
        loss = real(*a, **kw)
        return loss * float("nan") if kw.get("reduction", "mean") == "mean" else loss

    monkeypatch.setattr(T.F, "cross_entropy", always_nan)
    with pytest.raises(ProbeError, match="diverged"):
        train(tiny_config(small_text_file, tmp_path / "x", max_rollbacks=2), progress=False)
    assert not (tmp_path / "x" / "latest").exists()  # never a NaN checkpoint


def test_checkpoint_refuses_nan_weights_and_a_failed_save_keeps_the_old_one(tmp_path, tiny_lstm, monkeypatch):
    ck = checkpoint.load(tiny_lstm)
    dest = tmp_path / "ck"
    checkpoint.save(dest, ck.model, ck.meta)
    before = (dest / "model.safetensors").read_bytes()
    with torch.no_grad():
        ck.model.head.bias[0] = float("nan")
    with pytest.raises(ProbeError, match="NaN"):
        checkpoint.save(dest, ck.model, ck.meta)
    with torch.no_grad():
        ck.model.head.bias[0] = 0.0

    def crash(*a, **kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "write_json", crash)
    with pytest.raises(OSError):
        checkpoint.save(dest, ck.model, ck.meta)
    assert (dest / "model.safetensors").read_bytes() == before
    assert not list(tmp_path.glob(".ck.tmp-*"))
    checkpoint.load(dest)


def test_sampling_is_reproducible_per_seed(tiny_lstm):
    from probe.model.sampling import sample_text
    ck = checkpoint.load(tiny_lstm)
    a = sample_text(ck.model, ck.vocab, "ROMEO:", 50, seed=3)
    assert a == sample_text(ck.model, ck.vocab, "ROMEO:", 50, seed=3)
    assert a != sample_text(ck.model, ck.vocab, "ROMEO:", 50, seed=4)
    g = sample_text(ck.model, ck.vocab, "ROMEO:", 30, argmax=True)
    assert g == sample_text(ck.model, ck.vocab, "ROMEO:", 30, argmax=True, seed=9)


@pytest.mark.parametrize("kind", ["gru", "rnn"])
def test_gru_and_rnn_train(request, kind):
    run = request.getfixturevalue(f"tiny_{kind}")
    ck = checkpoint.load(run)
    assert ck.model.cfg.model == kind
    assert ck.meta["metrics"][-1]["val_loss"] < ck.meta["metrics"][0]["val_loss"] + 1e-6


def test_bf16_autocast_trains(tmp_path, small_text_file):
    from probe.train.precision import bf16_runs
    if not bf16_runs("cpu", "lstm"):
        pytest.skip("this CPU has no bfloat16 LSTM kernel (test_bf16_without_a_kernel_is_one_line checks the refusal)")
    r = train(tiny_config(small_text_file, tmp_path / "bf", bf16=True, max_iters=10, eval_every=10), progress=False)
    assert np.isfinite(r.final_val_loss)


def test_bf16_without_a_kernel_is_one_line_and_writes_nothing(tmp_path, small_text_file, tiny_lstm, capsys,
                                                              monkeypatch):
    import probe.train.precision as precision
    from probe.cli.main import main
    monkeypatch.setattr(precision, "bf16_runs", lambda device_type, cell: False)  # a CPU without native bf16
    out = tmp_path / "bf"
    assert main(["train", "--data", str(small_text_file), "--out", str(out), "--bf16", "--max-iters", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--bf16 does not run here" in err and "LSTM" in err
    assert not out.exists()
    assert main(["evaluate", str(tiny_lstm), "--bf16"]) == 2
    assert "--bf16 does not run here" in capsys.readouterr().err


def test_byte_vocabulary_takes_any_file(tiny_byte_lstm):
    ck = checkpoint.load(tiny_byte_lstm)
    assert ck.vocab.encoding == "byte" and ck.model.cfg.vocab_size == 256


def torchrun_train(out: Path, data: Path) -> subprocess.CompletedProcess:
    """`probe train` as 2 gloo ranks under torchrun, on a free port (a busy 29500 cannot break it)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    torchrun = Path(sys.executable).with_name("torchrun")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [str(torchrun), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(port),
           "-m", "probe", "train", "--data", str(data), "--out", str(out), "--rnn-size", "16", "--num-layers", "2",
           "--embed-size", "8", "--batch-size", "4", "--seq-length", "20", "--max-iters", "12",
           "--eval-every", "6", "--quiet"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


@pytest.mark.slow
def test_ddp_two_gloo_ranks_end_with_identical_weights(tmp_path, small_text_file):
    p = torchrun_train(tmp_path / "ddp", small_text_file)
    assert p.returncode == 0, p.stderr[-2000:]
    hashes = {line.split()[1]: line.split()[-1] for line in p.stderr.splitlines() if "weights sha256" in line}
    assert set(hashes) == {"0", "1"} and hashes["0"] == hashes["1"]
    saved = load_file(str(tmp_path / "ddp" / "latest" / "model.safetensors"))
    import hashlib
    ck = checkpoint.load(tmp_path / "ddp", which="latest")
    h = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in ck.model.parameters())).hexdigest()
    assert h == hashes["0"] and saved
    # a second run into the same folder: every rank refuses at once (none waits forever for the others)
    # with one line; torchrun stops the other rank when the first exits, so one or two such lines
    again = torchrun_train(tmp_path / "ddp", small_text_file)
    assert again.returncode != 0
    assert again.stderr.count("probe train: error:") in (1, 2) and "already holds a run" in again.stderr
    assert str(ROOT / "probe") not in again.stderr  # no traceback out of probe's code


def test_export_makes_a_lean_float16_copy_that_predicts_like_the_original(tmp_path, tiny_lstm):
    dest = checkpoint.export(tiny_lstm, tmp_path / "shipped")
    assert sorted(p.name for p in dest.iterdir()) == ["checkpoint.json", "model.safetensors"]
    w = load_file(str(dest / "model.safetensors"))
    assert all(v.dtype == torch.float16 for v in w.values())
    a, b = checkpoint.load(tiny_lstm), checkpoint.load(dest)
    x = torch.randint(0, a.vocab.size, (1, 50))
    la, _ = a.model(x)
    lb, _ = b.model(x)
    assert torch.allclose(la, lb, atol=2e-2) and not torch.equal(la, lb)
    assert b.meta["metrics"] == a.meta["metrics"] and b.meta["exported_from"]["dtype"] == "float16"


def test_optimizer_is_fused_and_stays_fused_when_resuming_an_unfused_checkpoint(tmp_path, small_text_file):
    from probe.train.loop import make_optimizer, optimizer_tensors, restore_optimizer
    cfg = tiny_config(small_text_file, tmp_path / "r")
    model = CharRNN(ModelConfig(30, rnn_size=8, num_layers=1, embed_size=4))
    plain = torch.optim.AdamW(model.parameters(), lr=1e-3)  # what checkpoints before the fused optimizer hold
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    plain.step()
    tensors, js = optimizer_tensors(plain)
    assert not js["param_groups"][0].get("fused")
    opt = make_optimizer(model, cfg)
    assert opt.param_groups[0]["fused"] is True
    restore_optimizer(opt, tensors, js, torch.device("cpu"))
    assert opt.param_groups[0]["fused"] is True
    assert torch.equal(opt.state[model.head.weight]["exp_avg"], plain.state[model.head.weight]["exp_avg"])
    opt.step()  # the restored state works with the fused kernel
    assert float(opt.state[model.head.weight]["step"]) == 2


def test_resume_takes_the_options_typed_even_when_they_equal_the_defaults(tmp_path, small_text_file):
    from probe.cli.main import main
    run = tmp_path / "r"
    train(tiny_config(small_text_file, run, max_iters=10, eval_every=5), progress=False)  # eval_every 5 saved
    assert TrainConfig().eval_every == 500
    # --eval-every 500 is the default value, typed: it must replace the saved 5; --max-iters extends the run
    assert main(["train", "--resume", str(run), "--max-iters", "12", "--eval-every", "500", "--quiet"]) == 0
    meta = json.loads((run / "latest" / "checkpoint.json").read_text())
    assert meta["step"] == 12 and meta["train_config"]["eval_every"] == 500
    # options not typed keep the checkpoint's values (the recipe, and stop conditions alike)
    assert main(["train", "--resume", str(run), "--max-iters", "14", "--quiet"]) == 0
    meta = json.loads((run / "latest" / "checkpoint.json").read_text())
    assert meta["train_config"]["eval_every"] == 500 and meta["train_config"]["rnn_size"] == 16
