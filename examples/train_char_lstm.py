"""A character LSTM trained by plain PyTorch code (no probe inside), saved as safetensors + vocab.json.

    python examples/train_char_lstm.py [TEXT_FILE] [--out my-lstm] [--steps 600]
    probe import my-lstm/model.safetensors --vocab my-lstm/vocab.json --out my-model
    probe record my-model my-lstm/val.txt --out my-rec      (val.txt: the last 10% of the text, not trained on)
"""
import argparse, json, math, pathlib, time
import torch
from safetensors.torch import save_file
from torch import nn

p = argparse.ArgumentParser()
p.add_argument("text", nargs="?", help="a UTF-8 text file (default: the Tiny Shakespeare bundled with probe)")
p.add_argument("--out", default="my-lstm")
p.add_argument("--steps", type=int, default=600)
args = p.parse_args()
if args.text:
    text = pathlib.Path(args.text).read_text(encoding="utf-8")
else:  # probe is used only to find its bundled corpus
    from probe.data.corpus import read_bytes, resolve
    text = read_bytes(resolve("shakespeare")).decode("utf-8")
chars = sorted(set(text))  # the vocabulary: character chars[i] has id i
split = int(len(text) * 0.9)
stoi = {c: i for i, c in enumerate(chars)}
data = torch.tensor([stoi[c] for c in text[:split]])

torch.manual_seed(0)
emb, lstm = nn.Embedding(len(chars), 32), nn.LSTM(32, 128, num_layers=2, batch_first=True)
fc = nn.Linear(128, len(chars))
model = nn.ModuleDict({"emb": emb, "lstm": lstm, "fc": fc})
opt, t0 = torch.optim.Adam(model.parameters(), lr=1e-2), time.time()
for step in range(1, args.steps + 1):
    starts = torch.randint(len(data) - 101, (32,)).tolist()
    x, y = (torch.stack([data[s + k:s + k + 100] for s in starts]) for k in (0, 1))
    loss = nn.functional.cross_entropy(fc(lstm(emb(x))[0]).reshape(-1, len(chars)), y.reshape(-1))
    opt.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    if step % 100 == 0:
        print(f"step {step}: {loss.item() / math.log(2):.3f} bits/char, {time.time() - t0:.0f} s", flush=True)
out = pathlib.Path(args.out)
out.mkdir(parents=True, exist_ok=True)
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
(out / "vocab.json").write_text(json.dumps(chars), encoding="utf-8")
(out / "val.txt").write_text(text[split:], encoding="utf-8")
print(f"saved {out}/model.safetensors, vocab.json and the held-out text val.txt")
