"""Which SQL the running worker answers for analysts (``POST /cx/query``).

The worker owns the embedded chdb directory while the pipeline runs, so
``cxstream query`` goes through it. It answers reading statements only:
``SELECT``, ``WITH``, ``SHOW``, ``DESCRIBE``/``DESC``, ``EXPLAIN``,
``EXISTS``, one statement per request. Anything that could change the
store (``INSERT``, ``ALTER``, ``DROP``, ``TRUNCATE``, ...) is refused;
migrations run when the worker starts, and a stopped pipeline's store can
be changed with ``cxstream query`` directly.
"""

from __future__ import annotations

import re

__all__ = ["READ_KEYWORDS", "read_only_refusal"]

READ_KEYWORDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS"})

# String literals first (a ';' or '--' inside one is text), then comments.
_LITERALS_AND_COMMENTS = re.compile(r"'(?:[^'\\]|\\.)*'|--[^\n]*|/\*.*?\*/", re.S)
_FIRST_WORD = re.compile(r"\s*\(*\s*([A-Za-z]+)")


def read_only_refusal(sql: str) -> str | None:
    """None when ``sql`` is one reading statement, else why it is refused."""
    text = _LITERALS_AND_COMMENTS.sub(lambda m: "''" if m.group().startswith("'") else " ", sql)
    text = text.strip().rstrip(";").strip()
    if not text:
        return "empty query"
    if ";" in text:
        return "one statement per query"
    match = _FIRST_WORD.match(text)
    word = match.group(1).upper() if match else ""
    if word not in READ_KEYWORDS:
        return f"only reading statements ({', '.join(sorted(READ_KEYWORDS))}) run while the pipeline runs, got {word or text[:20]!r}"
    return None
