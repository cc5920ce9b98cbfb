"""Ship a trained run: export its best checkpoint (float16) and write the model card beside it.

    python scripts/model_card.py runs/wiki trained_models/wiki --name wiki --corpus wiki

Every number on the card is measured here on the shipped float16 weights: validation and
test bits per character (exact, one stream), the baselines table on the same test split
(compressors, Kneser-Ney n-grams), samples at temperatures 0.5 and 1.0, plus the training
curve and the sample evolution recorded during training.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from probe.runtime.threads import apply_thread_policy  # noqa: E402

apply_thread_policy()  # the CLI's CPU thread policy, before torch loads (probe/runtime/threads.py)
sys.path.insert(0, str(ROOT / "benchmarks"))

from baselines import compressor_rows, load_corpus, model_row, ngram_row, render  # noqa: E402
from probe.model import checkpoint  # noqa: E402
from probe.train.evaluate import evaluate_split  # noqa: E402
from probe.figures.export import write_figures  # noqa: E402
from probe.figures import samples_table, training_curve  # noqa: E402
from probe.model.sampling import sample_text  # noqa: E402


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def command_of(tc: dict) -> str:
    """The `probe train` command that reproduces a run's recipe."""
    keys = ["data", "vocab", "model", "num_layers", "rnn_size", "embed_size", "dropout", "seq_length", "batch_size",
            "learning_rate", "lr_schedule", "warmup_iters", "grad_clip", "max_epochs", "eval_every", "seed"]
    parts = ["probe train"] + [f"--{k.replace('_', '-')} {tc[k]}" for k in keys if k in tc]
    if tc.get("bf16"):
        parts.append("--bf16")
    if tc.get("threads"):
        parts.append(f"--threads {tc['threads']}")
    parts.append(f"--out runs/{Path(tc['out']).name}")
    return " \\\n    ".join(parts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("dest")
    ap.add_argument("--name", required=True)
    ap.add_argument("--corpus", required=True, choices=["wiki", "shakespeare"])
    ap.add_argument("--notes", default="", help="a paragraph of notes for the card (Markdown)")
    args = ap.parse_args()
    dest = Path(args.dest)
    checkpoint.export(args.run, dest, half=True)
    ck = checkpoint.load(dest)
    meta, mc, tc = ck.meta, ck.meta["model_config"], ck.meta["train_config"]
    unit = "byte" if ck.vocab.encoding == "byte" else "char"
    val = evaluate_split(ck, "val")
    test = evaluate_split(ck, "test")
    cs = load_corpus(args.corpus, vocab=ck.vocab, split_json=meta["data"]["split"])
    rows = compressor_rows(cs) + [ngram_row(cs, 5), ngram_row(cs, 7), model_row(cs, ck, 1, False)]
    rows[-1]["method"] = f"**probe {mc['model'].upper()} {mc['num_layers']}x{mc['rnn_size']} (this model)**"
    table = render(cs, rows, markdown=True, quick=False)
    samples = {t: sample_text(ck.model, ck.vocab, "\n" if unit == "char" else "<page>", 600, temperature=t,
                              seed=1) for t in (0.5, 1.0)}
    write_figures([(training_curve(meta, unit=unit, title=f"{args.name}: training curve"),
                    dest / "training-curve.png"),
                   (samples_table(meta, title=f"{args.name}: samples during training"),
                    dest / "sample-evolution.png")])
    metrics = meta["metrics"]
    hours = metrics[-1]["time"] / 3600 if metrics else float("nan")
    chars = meta["step"] * tc["batch_size"] * tc["seq_length"]
    evo = []
    picks = sorted({0, len(meta["samples"]) // 4, len(meta["samples"]) // 2, len(meta["samples"]) - 1})
    for i in picks:
        s = meta["samples"][i]
        evo.append(f"**step {s['step']}** (temperature {s['temperature']}):\n\n```\n{s['text'][:300]}\n```")
    curve = "\n".join(f"| {m['step']} | {m['epoch']:.2f} | {m['train_loss'] / math.log(2):.3f} | "
                      f"{m['val_bpc']:.3f} | {m['time'] / 60:.0f} |" for m in metrics)
    if unit == "byte":
        quality = ("| | bits per byte | bits per character |\n|---|---:|---:|\n"
                   f"| validation | {val['bits_per_symbol']:.4f} | {val['bits_per_char']:.4f} |\n"
                   f"| test | {test['bits_per_symbol']:.4f} | {test['bits_per_char']:.4f} |")
    else:
        quality = ("| | bits per character | nats per character |\n|---|---:|---:|\n"
                   f"| validation | {val['bits_per_symbol']:.4f} | {val['loss_nats']:.4f} |\n"
                   f"| test | {test['bits_per_symbol']:.4f} | {test['loss_nats']:.4f} |")
    card = f"""# {args.name}: a character-level {mc['model'].upper()} trained on {'the bundled Wikipedia sample' if args.corpus == 'wiki' else 'Tiny Shakespeare'}

{mc['model'].upper()}, {mc['num_layers']} layers x {mc['rnn_size']} units, embedding {mc['embed_size']},
{meta['num_params']:,} parameters, {ck.vocab.encoding} vocabulary ({ck.vocab.size} symbols).
Weights: `model.safetensors` in float16 (every number below is measured with these float16 weights);
metadata, vocabulary, split, metrics and sample history: `checkpoint.json`.

{quality}

## Data and split
`{meta['data']['corpus']}` ({meta['data']['bytes']:,} bytes, sha256 `{meta['data']['sha256'][:16]}…`),
split contiguously by {unit}s: train {meta['data']['split']['train']}, validation {meta['data']['split']['val']},
test {meta['data']['split']['test']} (90/5/5).

## Recipe
```
{command_of(tc)}
```
Trained for {meta['step']:,} iterations ({meta['epoch']:.2f} epochs, {chars / 1e6:.1f}M {unit}s) in
{hours:.2f} hours of wall time on {cpu_name()} ({tc.get('threads') or 'default'} torch thread(s)
{'under bf16 autocast' if tc.get('bf16') else 'in float32'}, torch {meta.get('torch')}), sharing the machine with
other work part of the time. AdamW (betas 0.9/0.99), peak learning rate {tc['learning_rate']}, linear warm-up
{tc['warmup_iters']} iterations then cosine to {tc['min_lr_frac']}x, gradient clipping {tc['grad_clip']},
truncated BPTT over {tc['batch_size']} contiguous streams x {tc['seq_length']} {unit}s with the state carried.

## Compared on the same test split
{table}

Compressors: size of the compressed test text; "given train" is xz(train+test) - xz(train).
n-grams: interpolated modified Kneser-Ney fitted on the training split (`probe/model/ngram.py`).
Reproduce: `python benchmarks/baselines.py --corpus {args.corpus} --order 5 7 --model {dest} --markdown`.

## Training curve
![training curve](training-curve.png)

| step | epoch | train bits/{unit} | val bits/{unit} | minutes |
|---:|---:|---:|---:|---:|
{curve}

## Samples (seed 1, 600 {unit}s)
Temperature 0.5:
```
{samples[0.5]}
```
Temperature 1.0:
```
{samples[1.0]}
```

## Sample evolution during training
![samples during training](sample-evolution.png)

{chr(10).join(evo)}

{args.notes}
"""
    (dest / "README.md").write_text(card, encoding="utf-8")
    keep = ("loss_nats", "bits_per_symbol", "bits_per_char", "n_symbols", "n_chars")
    card_json = {"name": args.name, "val": {k: val[k] for k in keep}, "test": {k: test[k] for k in keep},
                 "baselines": [{"method": r["method"], "bits_per_char": r["bits_per_char"]} for r in rows]}
    with open(dest / "card.json", "w", encoding="utf-8") as f:
        json.dump(card_json, f, indent=1)
    print(card)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
