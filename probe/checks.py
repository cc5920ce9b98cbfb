"""Parameter checks whose messages name the Python parameter: `topk must be at least 0, not -1`.

They raise `ParamError`, a ProbeError that carries the parameter's name; the
CLI prints it under the option's name instead (`--topk must be at least 0`). A message
that advises a setting names it as a placeholder: `pass {overwrite=True} to replace it`
reads `overwrite=True` in Python and `--overwrite` on the command line.
"""
from __future__ import annotations

import math
import numbers
import re
from typing import Callable, Iterable, TypeVar

from probe.errors import ProbeError

T = TypeVar("T")
_SETTING = re.compile(r"\{([A-Za-z_]\w*)(?:=([^{}]*))?\}")


class ParamError(ProbeError):
    """A bad value for the parameter `param`; `str()` is `f"{param} {problem}"`.

    advice=True: `problem` is the whole message and names the settings that fix it as `{name}` or
    `{name=value}` (`param` and the parameters in `others`): Python reads `name`, `name=value`; the command
    line reads the options (`--name`, `--name value`; a flag's `=True` is the flag alone).
    """

    def __init__(self, param: str, problem: str, *, advice: bool = False, others: Iterable[str] = ()):
        self.param, self.problem, self.advice = param, problem, advice
        self.params = (param, *others)
        super().__init__(self.named(lambda p: p))

    def named(self, shown: "str | Callable[[str], str]") -> str:
        """The message with the parameters shown as options: `shown` is `param`'s (e.g. `--topk`), or a
        function giving any parameter's (a name it gives back unchanged is shown as in Python)."""
        show = shown if callable(shown) else (lambda p: shown if p == self.param else p)
        if not self.advice:
            return f"{show(self.param)} {self.problem}"

        def setting(m: re.Match) -> str:
            name, value = m.group(1), m.group(2)
            if name not in self.params:
                return m.group(0)
            option = show(name)
            if option == name:  # Python
                return name if value is None else f"{name}={value}"
            if not option.startswith("-") or value in (None, "True"):  # a positional, or a flag
                return option
            return f"{option} {value}"
        return _SETTING.sub(setting, self.problem)


def check_int(name: str, value, *, min: int | None = None, max: int | None = None) -> int:
    """`value` as an int within [min, max]; bools and non-integral numbers are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer()):
            raise ParamError(name, f"must be an integer, not {value!r}")
    value = int(value)
    _check_bounds(name, value, min, max)
    return value


def check_number(name: str, value, *, min: float | None = None, max: float | None = None,
                 min_open: bool = False, max_open: bool = False) -> float:
    """`value` as a finite float within its bounds (`min_open`/`max_open`: the bound itself is excluded)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ParamError(name, f"must be a number, not {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ParamError(name, f"must be a finite number, not {value}")
    if min is not None and max is not None:
        inside = (min < value if min_open else min <= value) and (value < max if max_open else value <= max)
        if not inside:
            lo, hi = "(" if min_open else "[", ")" if max_open else "]"
            raise ParamError(name, f"must be in {lo}{_fmt(min)}, {_fmt(max)}{hi}, not {_fmt(value)}")
    elif min is not None and min_open and not value > min:
        wanted = "positive" if min == 0 else f"more than {_fmt(min)}"
        raise ParamError(name, f"must be {wanted}, not {_fmt(value)}")
    else:
        _check_bounds(name, value, min, max)
    return value


def check_choice(name: str, value: T, choices: Iterable[T]) -> T:
    """`value` if it is one of `choices`."""
    choices = list(choices)
    if value not in choices:
        listed = ", ".join(map(str, choices))
        raise ParamError(name, f"must be one of {listed}, not {value!r}")
    return value


def check_at_least(**limits: tuple[object, int]) -> None:
    """Several integer lower bounds at once: `check_at_least(topk=(topk, 0), streams=(streams, 1))`."""
    for name, (value, low) in limits.items():
        check_int(name, value, min=low)


def _check_bounds(name: str, value: float, min: float | None, max: float | None) -> None:
    if min is not None and value < min:
        raise ParamError(name, f"must be at least {_fmt(min)}, not {_fmt(value)}")
    if max is not None and value > max:
        raise ParamError(name, f"must be at most {_fmt(max)}, not {_fmt(value)}")


def _fmt(v: float) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)
