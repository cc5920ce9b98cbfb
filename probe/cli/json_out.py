"""`--json FILE` and `--json -`, one way for every command: indented UTF-8 JSON, written whole or printed."""
from __future__ import annotations

import json

from probe.files import write_atomic_text


def emit_json(target: str, obj) -> bool:
    """Write `obj` as JSON to the file `target` (atomically), or print it when `target` is "-".

    Returns True when it was printed: the command then prints nothing else, so stdout stays valid JSON.
    """
    text = json.dumps(obj, indent=1, ensure_ascii=False)
    if target == "-":
        print(text)
        return True
    write_atomic_text(target, text + "\n")
    return False
