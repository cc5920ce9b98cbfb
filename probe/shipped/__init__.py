"""Package data that ships inside probe: `models` (the repository's trained_models/) and `corpora` (data/).

Mapped into the wheel by setup.py; found through probe.resources, never by path."""
