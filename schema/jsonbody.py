"""JSON from the network, with a bound on nesting.

``json.loads`` recurses once per level: a body of 100,000 ``[`` raises RecursionError
(not ValueError), and one just under the interpreter's limit parses but breaks the
next recursive step (validation, psycopg's Jsonb, ``json.dumps``). Every service reads
request bodies through :func:`loads`, so too deep is a ValueError the caller answers
with 400, never a 500.
"""

from __future__ import annotations

import json
from typing import Any, Final

MAX_DEPTH: Final = 64


class JsonTooDeep(ValueError):
    pass


def check_depth(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """Raise JsonTooDeep when ``value`` nests lists/objects deeper than ``max_depth``."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            raise JsonTooDeep(f"JSON nested deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children)


def loads(raw: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` that raises ValueError (JsonTooDeep) for too deep a document."""
    try:
        value = json.loads(raw)
    except RecursionError as exc:
        raise JsonTooDeep(f"JSON nested deeper than {max_depth} levels") from exc
    check_depth(value, max_depth)
    return value
