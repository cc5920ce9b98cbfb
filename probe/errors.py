"""The one exception type that the CLI turns into a one-line message."""


class ProbeError(Exception):
    """A user-facing problem (bad input, bad file, bad option): printed as one line, exit 2."""
