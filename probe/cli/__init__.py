"""The `probe` command: a dispatcher (main.py) over one module per subcommand (commands/)."""
from probe.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
