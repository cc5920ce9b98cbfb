"""probe: train, record and look inside character-level recurrent language models."""

__version__ = "0.1.0"
