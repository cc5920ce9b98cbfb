"""The character models and what works on their weights: the stacked RNN, checkpoints, sampling, n-gram baselines,
and imports of models trained elsewhere (`from_torch`, loaded on first use so `import probe.model` stays light)."""


def __getattr__(name: str):
    if name in ("from_torch", "import_file"):
        from probe.model import imports
        return getattr(imports, name)
    raise AttributeError(f"module 'probe.model' has no attribute {name!r}")
