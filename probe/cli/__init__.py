"""The `probe` command: a dispatcher (main.py) over one module per subcommand (commands/)."""
from probe.runtime.threads import set_wait_policy

set_wait_policy()  # OpenMP reads its wait setting once, when torch loads: before the command modules import it
from probe.cli.main import build_parser, main  # noqa: E402

__all__ = ["build_parser", "main"]
