"""probe import / probe.model.from_torch: models trained here by plain PyTorch (and min-char-rnn's numpy) code
import exactly (recorded states equal the module's own), and bad input is refused in one line, nothing written."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from probe.cli.main import main
from probe.data.vocab import UNK, Vocab
from probe.errors import ProbeError
from probe.model import checkpoint as ckpt
from probe.model import from_torch
from probe.model.imports import import_file
from probe.model.imports.vocabs import read_vocab
from probe.record.recorder import record

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


@pytest.fixture(scope="module")
def corpus(shakespeare_text) -> tuple[str, list[str]]:
    text = shakespeare_text[:4000]
    return text, sorted(set(text))


class UserRNN(nn.Module):
    """A character model as a user writes it: embedding or one-hot, one stacked RNN module or one a layer."""

    def __init__(self, cell: str, V: int, *, onehot: bool, batch_first: bool, per_layer: bool, layers: int = 2,
                 E: int = 8, H: int = 16):
        super().__init__()
        self.V, self.onehot, self.bf, self.per_layer = V, onehot, batch_first, per_layer
        if not onehot:
            self.tok_emb = nn.Embedding(V, E)
        n_in = V if onehot else E
        if per_layer:
            self.rnns = nn.ModuleList(CELLS[cell](n_in if i == 0 else H, H, batch_first=batch_first)
                                      for i in range(layers))
        else:
            self.rnn = CELLS[cell](n_in, H, num_layers=layers, batch_first=batch_first)
        self.drop = nn.Dropout(0.1)
        self.fc = nn.Linear(H, V)

    def modules_in_order(self) -> list[nn.Module]:
        return list(self.rnns) if self.per_layer else [self.rnn]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(x, self.V).float() if self.onehot else self.tok_emb(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (B, T) ids -> logits (B, T, V)
        e = self.embed(x)
        if not self.bf:
            e = e.transpose(0, 1)
        for m in self.modules_in_order():
            e, _ = m(e)
        if not self.bf:
            e = e.transpose(0, 1)
        return self.fc(self.drop(e))

    @torch.no_grad()
    def states(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """Every layer's h (and c) after each symbol, stepping the module's own RNN modules one symbol at a time."""
        self.eval()
        e = self.embed(torch.as_tensor(ids).view(1, -1))[0]
        per_layer_mods = [(m, k) for m in self.modules_in_order() for k in range(m.num_layers)]
        out = {f"L{i}.{s}": [] for i in range(len(per_layer_mods)) for s in ("h", "c")}
        carried = [None] * len(self.modules_in_order())
        for t in range(len(ids)):
            inp = e[t].view(1, 1, -1)
            layer = 0
            for j, m in enumerate(self.modules_in_order()):
                inp, carried[j] = m(inp, carried[j])
                hs, cs = carried[j] if isinstance(carried[j], tuple) else (carried[j], None)
                for k in range(m.num_layers):
                    out[f"L{layer}.h"].append(hs[k, 0].numpy().copy())
                    if cs is not None:
                        out[f"L{layer}.c"].append(cs[k, 0].numpy().copy())
                    layer += 1
        return {k: np.stack(v) for k, v in out.items() if v}


def train_user_model(cell: str, chars: list[str], text: str, seed: int = 0, steps: int = 30, **kw) -> UserRNN:
    """A few dozen Adam steps of plain PyTorch training on the text."""
    torch.manual_seed(seed)
    model = UserRNN(cell, len(chars), **kw)
    stoi = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in text])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        starts = torch.randint(len(data) - 33, (8,))
        x = torch.stack([data[s:s + 32] for s in starts])
        y = torch.stack([data[s + 1:s + 33] for s in starts])
        loss = nn.functional.cross_entropy(model(x).reshape(-1, len(chars)), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(["import", *map(str, argv)])
    got = capsys.readouterr()
    return code, got.out, got.err


def assert_records_like(model: UserRNN, ck, text: str, tmp_path) -> None:
    """probe.record of the imported checkpoint: every recorded h (and c) equals the module's own state."""
    rec = record(ck, text, tmp_path / "rec", dtype="float32", gates=False)
    assert rec.meta["unknown_chars"]["count"] == 0  # no <unk> id: symbol 0 is a real character
    want = model.states(ck.vocab.encode(text))
    assert len(want) == ck.config.num_layers * (2 if ck.config.model == "lstm" else 1)
    assert all(rec.has(name) for name in want)
    for name, states in want.items():
        got = np.asarray(rec.array(name), dtype=np.float32)
        assert got.shape == states.shape
        np.testing.assert_allclose(got, states, atol=1e-5, rtol=1e-5, err_msg=name)  # float32: c can grow past 100
    # and the loss probe records is the module's own (its forward, eval mode), per character
    ids = torch.as_tensor(ck.vocab.encode(text)).view(1, -1)
    with torch.no_grad():
        logp = torch.log_softmax(model(ids[:, :-1])[0].double(), -1)
    bits = (-logp.gather(1, ids[0, 1:].view(-1, 1))[:, 0] / np.log(2)).numpy()
    np.testing.assert_allclose(np.asarray(rec.loss_bits, dtype=np.float64)[:-1], bits, atol=1e-4)


# --------------------------------------------------------------------------- exact imports

@pytest.mark.parametrize("cell,onehot,batch_first,per_layer,how", [
    ("lstm", False, True, False, "from_torch"),
    ("lstm", True, False, True, "pt"),
    ("gru", False, False, False, "safetensors"),
    ("gru", True, True, True, "from_torch"),
    ("rnn", False, True, True, "safetensors"),
    ("rnn", True, False, False, "memory"),
])
def test_imported_model_records_the_modules_own_states(corpus, tmp_path, capsys, cell, onehot, batch_first,
                                                       per_layer, how):
    text, chars = corpus
    model = train_user_model(cell, chars, text, onehot=onehot, batch_first=batch_first, per_layer=per_layer)
    out = tmp_path / "imported"
    if how == "from_torch":
        own = cell == "lstm"  # checked against the module's own forward, else its submodules run in order
        ck = from_torch(model, chars, out, forward=model if own else None)
        assert (ck.meta["imported"]["check"]["reference"] == "your forward function") == own
    elif how == "memory":
        ck = from_torch(model, "".join(chars))  # a string vocabulary; the checkpoint stays in memory
        assert not out.exists()
    else:
        vocab = tmp_path / "vocab.json"
        vocab.write_text(json.dumps(chars))
        if how == "pt":  # a training checkpoint: the weights nested under model_state_dict
            weights = tmp_path / "ckpt.pt"
            torch.save({"model_state_dict": model.state_dict(), "step": 30, "lr": 0.01}, weights)
        else:
            weights = tmp_path / "model.safetensors"
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
        code, printed, err = cli(capsys, weights, "--vocab", vocab, "--out", out, "--check-text", vocab)
        assert code == 0, err
        assert f"{cell.upper()} 2 x 16" in printed and "wrote" in printed
        assert ("one-hot input" in printed) == onehot
        ck = ckpt.load(out)
    check = ck.meta["imported"]["check"]
    assert check["passed"] and check["mean_abs"] <= 1e-4 and check["n"] > 100
    assert ck.config.model == cell and ck.config.num_layers == 2 and ck.config.rnn_size == 16
    assert ck.vocab.symbols == chars and ck.vocab.unk is None  # the user's ids, kept
    assert_records_like(model, ck, text[1000:1300], tmp_path)


def test_the_check_refuses_a_model_that_differs_and_writes_nothing(corpus, tmp_path):
    text, chars = corpus
    model = train_user_model("lstm", chars, text, onehot=False, batch_first=True, per_layer=False, steps=5)
    with pytest.raises(ProbeError, match="refused: the imported model's loss differs"):
        from_torch(model, chars, tmp_path / "out", forward=lambda x: model(x) * 1.01)  # e.g. a temperature inside
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


def test_from_torch_refuses_parts_it_cannot_place(corpus):
    _, chars = corpus

    class WithNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.rnn = nn.Embedding(len(chars), 8), nn.GRU(8, 16)
            self.norm, self.fc = nn.LayerNorm(16), nn.Linear(16, len(chars))

    with pytest.raises(ProbeError, match=r"^norm.weight \(in LayerNorm\) is not an embedding"):
        from_torch(WithNorm(), chars)

    class Bidirectional(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.rnn, self.fc = nn.Embedding(len(chars), 8), nn.LSTM(8, 16, bidirectional=True), \
                nn.Linear(32, len(chars))

    with pytest.raises(ProbeError, match="'rnn' is bidirectional"):
        from_torch(Bidirectional(), chars)


# --------------------------------------------------------------------------- min-char-rnn

def train_min_char_rnn(data: str, chars: list[str], hidden: int = 16, seq: int = 25, steps: int = 40, seed: int = 0
                       ) -> dict[str, np.ndarray]:
    """Karpathy's min-char-rnn, as he wrote it (numpy, Adagrad), for a few dozen steps."""
    rng = np.random.default_rng(seed)
    V = len(chars)
    ix = {c: i for i, c in enumerate(chars)}
    Wxh, Whh, Why = rng.standard_normal((hidden, V)) * 0.01, rng.standard_normal((hidden, hidden)) * 0.01, \
        rng.standard_normal((V, hidden)) * 0.01
    bh, by = np.zeros((hidden, 1)), np.zeros((V, 1))
    params = [Wxh, Whh, Why, bh, by]
    mem = [np.zeros_like(p) for p in params]
    hprev, p = np.zeros((hidden, 1)), 0
    for _ in range(steps):
        if p + seq + 1 >= len(data):
            hprev, p = np.zeros((hidden, 1)), 0
        inputs, targets = [ix[c] for c in data[p:p + seq]], [ix[c] for c in data[p + 1:p + seq + 1]]
        xs, hs, ps = {}, {-1: hprev}, {}
        for t in range(len(inputs)):
            xs[t] = np.zeros((V, 1))
            xs[t][inputs[t]] = 1
            hs[t] = np.tanh(Wxh @ xs[t] + Whh @ hs[t - 1] + bh)
            ys = Why @ hs[t] + by
            ps[t] = np.exp(ys) / np.sum(np.exp(ys))
        grads = [np.zeros_like(q) for q in params]
        dhnext = np.zeros((hidden, 1))
        for t in reversed(range(len(inputs))):
            dy = ps[t].copy()
            dy[targets[t]] -= 1
            grads[2] += dy @ hs[t].T
            grads[4] += dy
            dhraw = (1 - hs[t] ** 2) * (Why.T @ dy + dhnext)
            grads[3] += dhraw
            grads[0] += dhraw @ xs[t].T
            grads[1] += dhraw @ hs[t - 1].T
            dhnext = Whh.T @ dhraw
        for q, g, m in zip(params, grads, mem):
            np.clip(g, -5, 5, out=g)
            m += g * g
            q += -1e-1 * g / np.sqrt(m + 1e-8)
        hprev, p = hs[len(inputs) - 1], p + seq
    return dict(Wxh=Wxh, Whh=Whh, Why=Why, bh=bh, by=by)


def min_char_states(arrays: dict[str, np.ndarray], ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """min-char-rnn's h after each symbol and its loss in bits of the next one (float64)."""
    h = np.zeros((arrays["Whh"].shape[0], 1))
    hs, bits = [], []
    for t, i in enumerate(ids):
        x = np.zeros((arrays["Wxh"].shape[1], 1))
        x[i] = 1
        h = np.tanh(arrays["Wxh"] @ x + arrays["Whh"] @ h + arrays["bh"])
        hs.append(h[:, 0])
        if t + 1 < len(ids):
            y = arrays["Why"] @ h + arrays["by"]
            bits.append(-(y[ids[t + 1], 0] - y.max() - np.log(np.exp(y - y.max()).sum())) / np.log(2))
    return np.stack(hs), np.array(bits)


def test_min_char_rnn_npz_imports_exactly(corpus, tmp_path, capsys):
    text, _ = corpus
    chars = list(dict.fromkeys(text))  # min-char-rnn's order is whatever its run had, not sorted
    arrays = train_min_char_rnn(text, chars)
    np.savez(tmp_path / "min-char.npz", **arrays)
    (tmp_path / "chars.json").write_text(json.dumps(chars))
    code, printed, err = cli(capsys, tmp_path / "min-char.npz", "--vocab", tmp_path / "chars.json", "--out",
                             tmp_path / "ck")
    assert code == 0, err
    assert "min-char-rnn .npz" in printed and "RNN 1 x 16, one-hot input" in printed
    assert "min-char-rnn's own equations" in printed
    ck = ckpt.load(tmp_path / "ck")
    assert ck.vocab.symbols == chars and ck.config.model == "rnn"
    passage = text[2000:2300]
    rec = record(ck, passage, tmp_path / "rec", dtype="float32")
    hs, bits = min_char_states(arrays, ck.vocab.encode(passage))
    np.testing.assert_allclose(np.asarray(rec.array("L0.h")), hs, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(rec.loss_bits, dtype=np.float64)[:-1], bits, atol=1e-4)
    # the characters may also travel inside the .npz (a string array: no pickle)
    np.savez(tmp_path / "with-chars.npz", chars=np.array(chars), **arrays)
    assert import_file(tmp_path / "with-chars.npz").vocab.symbols == chars


# --------------------------------------------------------------------------- refusals: one line, exit 2, no output

@pytest.fixture(scope="module")
def lstm_files(corpus, tmp_path_factory):
    text, chars = corpus
    model = train_user_model("lstm", chars, text, onehot=False, batch_first=False, per_layer=False, steps=3)
    folder = tmp_path_factory.mktemp("bad")
    (folder / "vocab.json").write_text(json.dumps(chars))
    return folder, {k: v.clone() for k, v in model.state_dict().items()}, chars


def refused(capsys, tmp_path, weights, *extra, vocab=None) -> str:
    out = tmp_path / "out"
    code, printed, err = cli(capsys, weights, "--vocab", vocab, "--out", out, *extra)
    assert code == 2, (printed, err)
    assert err.count("\n") == 1 and err.startswith("probe import: error: ") and "Traceback" not in err, err
    assert not out.exists() and not [p for p in out.parent.iterdir() if p.name.startswith(".out")]
    return err


@pytest.mark.parametrize("change,message", [
    (lambda sd: sd.update({"rnn.weight_hh_l1": torch.zeros(64, 15)}),
     r"rnn\.weight_hh_l1 has shape \(64, 15\), but rnn\.weight_hh_l0 has \(64, 16\)"),
    (lambda sd: sd.update({"rnn.weight_ih_l1": torch.zeros(64, 8)}),
     r"rnn\.weight_ih_l1 has shape \(64, 8\), but layer 1 of this LSTM \(4 x 16 units, reading the 16 outputs of "
     r"layer 0\) needs \(64, 16\)"),
    (lambda sd: sd.pop("rnn.weight_hh_l0"), r"missing key rnn\.weight_hh_l0"),
    (lambda sd: sd.pop("fc.weight"), r"no read-out found"),
    (lambda sd: sd.update({"norm.weight": torch.ones(16)}),
     r"norm\.weight \(16,\) is not an embedding, RNN or read-out"),
    (lambda sd: sd.update({"tok_emb.weight": torch.zeros(7, 8)}), r"there is no embedding \(\d+, 8\)"),
    (lambda sd: sd.update({"fc.weight": sd["fc.weight"].long()}), r"fc\.weight holds int64, not floating point"),
])
def test_bad_weights_are_refused_naming_the_key(capsys, tmp_path, lstm_files, change, message):
    folder, sd, _ = lstm_files
    sd = dict(sd)
    change(sd)
    weights = tmp_path / "bad.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(weights))
    err = refused(capsys, tmp_path, weights, vocab=folder / "vocab.json")
    assert __import__("re").search(message, err), err


class Anything:
    """An arbitrary Python object: torch.save pickles it, weights_only loading must refuse it."""


def test_bad_files_and_options_are_refused(capsys, tmp_path, lstm_files):
    folder, sd, chars = lstm_files
    good = tmp_path / "good.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(good))
    short = tmp_path / "short.json"
    short.write_text(json.dumps(chars[:-1]))
    assert f"--vocab has {len(chars) - 1} symbols, but the model's read-out (fc.weight) has {len(chars)} rows" in \
        refused(capsys, tmp_path, good, vocab=short)

    pickle = tmp_path / "pickle.pt"
    torch.save({"model_state_dict": sd, "extra": Anything()}, pickle)  # not weights only
    err = refused(capsys, tmp_path, pickle, vocab=folder / "vocab.json")
    assert "holds a pickled Python object" in err and "Anything" in err and "never unpickles" in err
    whole = tmp_path / "whole.pt"
    torch.save(nn.LSTM(4, 4), whole)  # a whole module, pickled
    assert "weights_only" in refused(capsys, tmp_path, whole, vocab=folder / "vocab.json")
    t7 = tmp_path / "lm.t7"
    t7.write_bytes(b"\x00" * 64)
    assert "no well-kept reader" in refused(capsys, tmp_path, t7, vocab=folder / "vocab.json")
    assert "--cell is gru, but rnn.weight_hh_l0 has shape (64, 16)" in refused(
        capsys, tmp_path, good, "--cell", "gru", vocab=folder / "vocab.json")
    assert "--map head.weight=decoder.weight: the weights have no key 'decoder.weight'" in refused(
        capsys, tmp_path, good, "--map", "head.weight=decoder.weight", vocab=folder / "vocab.json")
    bad_vocab = tmp_path / "gap.json"
    bad_vocab.write_text(json.dumps({c: i + 1 for i, c in enumerate(chars)}))
    assert "no symbol has id 0" in refused(capsys, tmp_path, good, vocab=bad_vocab)
    (tmp_path / "out").mkdir()  # an existing folder needs --overwrite
    code, _, err = cli(capsys, good, "--vocab", folder / "vocab.json", "--out", tmp_path / "out")
    assert code == 2 and "--overwrite" in err and list((tmp_path / "out").iterdir()) == []


def test_map_names_roles_that_shapes_cannot_tell(capsys, tmp_path, corpus):
    """Embedding and read-out of the same shape, without bias or telling names: refused, then --map places them."""
    text, chars = corpus
    V = len(chars)
    torch.manual_seed(0)
    sd = {"a.weight": torch.randn(V, 16), "r.weight_ih_l0": torch.randn(64, 16) * 0.3,
          "r.weight_hh_l0": torch.randn(64, 16) * 0.3, "b.weight": torch.randn(V, 16)}
    weights = tmp_path / "w.pt"
    torch.save(sd, weights)
    (tmp_path / "v.json").write_text(json.dumps({str(i): c for i, c in enumerate(chars)}))  # id -> symbol
    err = refused(capsys, tmp_path, weights, vocab=tmp_path / "v.json")
    assert "cannot tell the read-out among a.weight, b.weight" in err and "--map head.weight=KEY" in err
    code, printed, err = cli(capsys, weights, "--vocab", tmp_path / "v.json", "--out", tmp_path / "ck",
                             "--map", "embed.weight=a.weight", "--map", "head.=b.")
    assert code == 0, err
    ck = ckpt.load(tmp_path / "ck")
    assert torch.equal(ck.model.embed.weight, sd["a.weight"]) and torch.equal(ck.model.head.weight, sd["b.weight"])
    assert not ck.model.head.bias.any() and not ck.model.layers[0].bias_ih_l0.any()  # absent biases: zeros


# --------------------------------------------------------------------------- vocabularies

def test_vocabularies_in_every_shape_keep_their_ids(tmp_path):
    syms = ["b", "a", "\n"]
    want = Vocab.from_symbols(syms)
    assert read_vocab(syms) == want and read_vocab("ba\n") == want
    assert read_vocab({"b": 0, "a": 1, "\n": 2}) == want and read_vocab({"0": "b", "1": "a", "2": "\n"}) == want
    assert read_vocab({"itos": syms, "stoi": {}}) == want
    (tmp_path / "v.json").write_text(json.dumps("ba\n"))
    assert read_vocab(tmp_path / "v.json") == want
    assert read_vocab("bytes") == Vocab.byte()
    assert list(want.encode("ab\n")) == [1, 0, 2] and want.decode([2, 1]) == "\na"
    with pytest.raises(ProbeError, match=r"outside the model's vocabulary, which has no <unk> symbol \(first 'z'"):
        want.encode("abz")
    assert want.unknown("abz") == {"z": 1}
    # round trip through checkpoint JSON; a U+FFFD symbol is taken as the unknown symbol
    assert Vocab.from_json(want.to_json()) == want and want.to_json()["unk"] is None
    with_unk = read_vocab(["a", UNK, "b"])
    assert with_unk.unk == 1 and list(with_unk.encode("azb")) == [0, 1, 2]
    for bad, msg in ((["ab", "c"], "is not one character"), (["a", "a"], "has two ids"),
                     ({"a": 0, "b": 2}, "no symbol has id 1"), ({"a": 0, "b": 0}, "id 0 has two symbols")):
        with pytest.raises(ProbeError, match=msg):
            read_vocab(bad)


def test_probe_vocabularies_read_as_before():
    old = {"kind": "char", "symbols": [UNK, "a", "b"]}  # checkpoint.json as probe train has always written it
    v = Vocab.from_json(old)
    assert v.unk == 0 and v.to_json() == old and v == Vocab.from_text("abba")
    assert list(v.encode("abz")) == [1, 2, 0] and v.unknown("abz") == {"z": 1}
    assert Vocab.from_json({"kind": "byte", "symbols": None}) == Vocab.byte() and Vocab.byte().unk is None


def test_byte_vocabulary_and_check_text_outside_the_vocabulary(corpus):
    torch.manual_seed(0)
    sample = "héllo wörld " * 20
    ck = from_torch(UserRNN("gru", 256, onehot=False, batch_first=True, per_layer=False, layers=1), "bytes",
                    check_text=sample)
    assert ck.vocab.encoding == "byte" and ck.meta["imported"]["check"]["n"] == len(sample.encode("utf-8")) - 1
    _, chars = corpus
    ck = from_torch(UserRNN("lstm", len(chars), onehot=True, batch_first=True, per_layer=False, layers=1), chars,
                    check_text="To be, or not to be €€ that is the matter")
    check = ck.meta["imported"]["check"]  # a vocabulary without <unk>: what it cannot read is left out, and said
    assert check["passed"] and check["left_out"] == 2
    assert "2 characters outside the vocabulary left out" in check["text"]
