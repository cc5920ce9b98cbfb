"""Say a size cannot be allocated before trying: an estimate in bytes against the memory available now."""
from __future__ import annotations

import psutil

from probe.checks import ParamError
from probe.errors import ProbeError
from probe.files import scaled_bytes


def available_bytes() -> int:
    """Memory the system can give this process now without swapping (psutil's `available`)."""
    return int(psutil.virtual_memory().available)


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KB'; 3.2e12 -> '2.9 TB' (powers of 1024)."""
    return scaled_bytes(n, 1024)


def check_fits(nbytes: float, what: str, hint: str, *, param: str | None = None, value=None) -> None:
    """ProbeError if `what` needs about `nbytes` and the machine has less available, e.g.
    'a 1x1000000000 LSTM needs about 3.6 EB of memory; 20.1 GB is available: lower rnn_size'.

    With `param`, the error names that one parameter (the CLI shows it as its option): 'n_perm 10**11 needs...'.
    """
    have = available_bytes()
    if nbytes <= have:
        return
    if param is not None:
        raise ParamError(param, f"{value:,} needs about {human_bytes(nbytes)} of memory ({what}); "
                                f"{human_bytes(have)} is available: {hint}")
    raise ProbeError(f"{what} needs about {human_bytes(nbytes)} of memory; {human_bytes(have)} is available: {hint}")
