"""The one walk over the layers (probe.model.hooks), holding units (probe.model.intervene) and sampling."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from probe.data.vocab import Vocab
from probe.errors import ProbeError
from probe.model.charrnn import CharRNN, ModelConfig
from probe.model.hooks import run_with_cache, run_with_hooks
from probe.model.intervene import Hold, hold_hooks, parse_hold
from probe.model.sampling import sample_text

TEXT = "the cat sat on the mat; a bat ate the hat.\n" * 3


def model_of(kind: str, layers: int = 2, seed: int = 0) -> CharRNN:
    torch.manual_seed(seed)
    m = CharRNN(ModelConfig(vocab_size=20, model=kind, rnn_size=12, num_layers=layers, embed_size=6, dropout=0.0))
    return m.eval()


def ids(n: int = 60, rows: int = 1, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 20, (rows, n), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_walk_without_interventions_is_the_fused_forward_exactly(kind):
    m = model_of(kind)
    x = ids(rows=3)
    with torch.no_grad():  # inference (with autograd on, oneDNN runs its training kernel: other rounding)
        logits, state = m(x)
        _, _, outs = m(x, return_layers=True)
    w = run_with_cache(m, x, ["L0.h", "L1.h"])
    assert torch.equal(w.logits, logits)
    assert torch.equal(w.cache["L1.h"], outs[1]) and torch.equal(w.cache["L0.h"], outs[0])
    # carried state: a second chunk from the returned state equals one pass over both
    w2 = run_with_hooks(m, x[:, 30:], run_with_hooks(m, x[:, :30]).state)
    assert torch.equal(w2.logits, logits[:, 30:])


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_a_stepped_layer_matches_the_fused_kernel(kind):
    m = model_of(kind)
    x = ids()
    with torch.no_grad():
        logits, state = m(x)
    mark = {"n": 0}

    def count(s, t):
        mark["n"] += 1  # a hook that changes nothing

    w = run_with_hooks(m, x, step_hooks={"L0.h": count}, cache=["L0.h"])
    assert mark["n"] == x.shape[1]
    assert torch.allclose(w.logits, logits, atol=1e-5)
    h_last = state[0][0] if kind == "lstm" else state[0]
    assert torch.allclose(w.cache["L0.h"][:, -1], h_last[0], atol=1e-6)
    if kind == "lstm":
        c = run_with_cache(m, x, ["L1.c"]).cache["L1.c"]
        assert torch.allclose(c[:, -1], state[1][1][0], atol=1e-5)


@pytest.mark.parametrize("name", ["L0.c.3", "L1.h.5", "L0.h.0"])
def test_holding_a_unit_at_its_own_value_changes_nothing(name):
    m = model_of("lstm")
    x = ids()
    layer, kind, index = name.split(".")
    clean = run_with_cache(m, x, [f"{layer}.{kind}"])
    own = clean.cache[f"{layer}.{kind}"][0, :, int(index)]
    w = run_with_hooks(m, x, step_hooks=hold_hooks(m, [Hold(name, own.numpy())], steps=x.shape[1]))
    assert torch.allclose(w.logits, clean.logits, atol=1e-5)
    far = run_with_hooks(m, x, step_hooks=hold_hooks(m, [Hold(name, 5.0)]))
    assert not torch.allclose(far.logits, clean.logits, atol=1e-2)


def test_holds_in_streams_equal_separate_runs_and_share_the_layers_below():
    m = model_of("lstm", layers=3)
    x = ids()
    names = ["L1.c.0", "L1.c.7", "L1.h.2"]
    batch = run_with_hooks(m, x, streams=len(names),
                           step_hooks=hold_hooks(m, [Hold(u, 0.3, stream=s) for s, u in enumerate(names)], streams=3))
    assert batch.logits.shape[0] == 3
    assert batch.state[0][0].shape[1] == 1  # the layer below ran once, shared
    for s, u in enumerate(names):
        one = run_with_hooks(m, x, step_hooks=hold_hooks(m, [Hold(u, 0.3)]))
        assert torch.allclose(batch.logits[s], one.logits[0], atol=1e-5)
    # a held c is carried: the next step's h comes from it, that step's h does not
    w = run_with_hooks(m, x, step_hooks=hold_hooks(m, [Hold("L0.c.4", 2.0)]), cache=["L0.c", "L0.h"])
    assert torch.all(w.cache["L0.c"][0, :, 4] == 2.0)
    clean = run_with_cache(m, x, ["L0.h"])
    assert torch.allclose(w.cache["L0.h"][0, 0], clean.cache["L0.h"][0, 0])


def _old_clamped(model, vocab, prime, length, unit, value, seed):
    """The dashboard's clamped generation before the walk (its loop kept here as the reference)."""
    layer, kind, index = unit.split(".")
    L, i = int(layer[1:]), int(index)
    gen = torch.Generator().manual_seed(seed)
    state = [None] * len(model.layers)

    def step(symbol):
        x = model.embed(torch.tensor([[symbol]]))
        for j, lay in enumerate(model.layers):
            x, state[j] = lay(x, state[j])
            if j == L:
                h, c = state[j]
                if kind == "h":
                    x = x.clone()
                    x[..., i] = value
                    h = h.clone()
                    h[..., i] = value
                else:
                    c = c.clone()
                    c[..., i] = value
                state[j] = (h, c)
        return model.head(x)[0, -1]

    with torch.no_grad():
        for s in vocab.encode(prime):
            logits = step(int(s))
        out = []
        for _ in range(length):
            nxt = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=gen))
            out.append(nxt)
            logits = step(nxt)
    return vocab.decode(out)


@pytest.mark.parametrize("unit,value", [("L1.h.3", 0.9), ("L0.c.2", -3.0)])
def test_clamped_generation_equals_the_old_loop(unit, value):
    vocab = Vocab.from_text(TEXT)
    torch.manual_seed(0)
    m = CharRNN(ModelConfig(vocab_size=vocab.size, rnn_size=16, num_layers=2, embed_size=8, dropout=0.0)).eval()
    new = sample_text(m, vocab, "the ", 80, seed=5, holds=[Hold(unit, value)])
    assert new == _old_clamped(m, vocab, "the ", 80, unit, value, 5)
    assert new != sample_text(m, vocab, "the ", 80, seed=5)


def test_bad_holds_are_one_clear_line():
    m = model_of("lstm")
    for hold, msg in ((Hold("L0.f.1", 1.0), "carries nothing from one step to the next"),
                      (Hold("L5.h.1", 1.0), "no unit L5.h.1"), (Hold("L0.h.99", 1.0), "no unit"),
                      (Hold("L0.h.1", float("nan")), "finite"), (Hold("L0.h.1", float("inf")), "finite"),
                      (Hold("x.y", 1.0), "not a unit name")):
        with pytest.raises(ProbeError, match=msg):
            hold_hooks(m, [hold])
    with pytest.raises(ProbeError, match="no cell state"):
        hold_hooks(model_of("gru"), [Hold("L0.c.1", 1.0)])
    with pytest.raises(ProbeError, match="UNIT=VALUE"):
        parse_hold("L0.h.1")
    with pytest.raises(ProbeError, match="finite"):
        parse_hold("L0.h.1=nan")
    assert parse_hold("L1.c.7=0.9") == Hold("L1.c.7", 0.9)
    with pytest.raises(ProbeError, match="hook point"):
        run_with_hooks(m, ids(), cache=["L9.h"])
    assert np.isfinite(run_with_hooks(m, ids(), cache=["logits"]).cache["logits"].numpy()).all()


def test_a_layer_runner_runs_every_unstepped_layer_and_its_extras_come_back():
    m = model_of("lstm", layers=3)
    x = ids(rows=2)
    seen = []

    def runner(l, layer, inp, s):
        seen.append(l)
        out, s = layer(inp, s)
        return out, s, ("ran", l, tuple(inp.shape))

    hooks = {"L1.h": lambda h, t: None}  # layer 1 is stepped: the runner does not see it
    plain = run_with_hooks(m, x, step_hooks=hooks, cache=["L2.h"])
    w = run_with_hooks(m, x, step_hooks=hooks, cache=["L2.h"], layer_runner=runner)
    assert seen == [0, 2]
    assert w.extras == [("ran", 0, (2, 60, 6)), None, ("ran", 2, (2, 60, 12))]
    assert torch.equal(w.logits, plain.logits) and torch.equal(w.cache["L2.h"], plain.cache["L2.h"])
    # a runner's output is what the layers above read
    doubled = run_with_hooks(m, x, layer_runner=lambda l, layer, inp, s: (2 * layer(inp, s)[0], None, None)
                             if l == 0 else (*layer(inp, s), None), cache=["L0.h"])
    assert torch.equal(doubled.cache["L0.h"], 2 * run_with_cache(m, x, ["L0.h"]).cache["L0.h"])
    assert not torch.equal(doubled.logits, plain.logits)
    # without the head: no logits, the same state
    bare = run_with_hooks(m, x, head=False)
    assert bare.logits is None
    for a, b in zip(bare.state, run_with_hooks(m, x).state):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ProbeError, match="head=True"):
        run_with_hooks(m, x, head=False, cache=["logits"])
