"""Analysts' SQL on the running pipeline (``POST /cx/query``, ``cxstream query``): ClickHouse decides.

The worker owns the embedded chdb directory while the pipeline runs, so
``cxstream query`` goes through it. What an analyst's statement may do is
decided by the engine, not by patterns over the text:

* **Read-only by the engine.** Each query runs on a fresh chdb connection of
  its own with ``readonly=1`` set after the per-query limits: ClickHouse then
  refuses writes, DDL, temporary tables, ``SET`` and every ``SETTINGS``
  clause (``readonly=0`` included), and the table functions that reach files,
  URLs, processes or other servers (``file``, ``url``, ``executable``,
  ``remote``, ``s3``, ...) in a ``SELECT``.
* **One statement, by ClickHouse's parser.** ``formatQuerySingleLine`` parses
  the text (passed as a bound parameter) and refuses a second statement
  ("Multi-statements are not allowed"), whatever quotes or comments hide it.
* **What readonly=1 does not cover**, decided on the parser's tree
  (``EXPLAIN AST``, see ``ast_refusal``): the statement must be a reading
  one (``SELECT``, ``SHOW``, ``DESCRIBE``, ``EXISTS``, ``EXPLAIN``: ``KILL
  QUERY`` is allowed by readonly=1 and would end the worker's inserts), carry
  no ``INTO OUTFILE`` (written by chdb's client side, which readonly does
  not govern) and no ``FORMAT`` (the endpoint chooses it), and use no table
  function outside ``SAFE_TABLE_FUNCTIONS`` (``DESCRIBE file(...)`` /
  ``DESCRIBE url(...)`` read the file or fetch the URL to infer a schema even
  under readonly=1), and none of the ordinary functions that readonly=1
  leaves free to reach outside (``UNSAFE_FUNCTIONS``: ``file(path)`` returns
  any file's text in chdb; the ``ai*`` functions call a given endpoint).
* **Limits** (``QueryLimits``): time, memory, result rows, one thread.
* **Nothing shared with ingestion.** The connection is not the worker's, so
  an analyst query never waits for, or holds, the lock the inserts take
  (chdb runs queries of different connections concurrently); a connection
  is used for one query and closed, so an error in the middle of an output
  (chdb then keeps the partial output on that connection) cannot show up in
  the next answer.

Against a ClickHouse server the worker runs the query on a connection of its
own with the same limits and ``readonly=1`` sent as query settings; the
server's parser refuses multi-statements and its TCP interface writes no
``INTO OUTFILE``. Analysts there should have their own read-only user
(docs/security.md, "Analyst access on a ClickHouse server").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.settings import Settings
from sinks.client import ClickHouse, ClickHouseError

__all__ = [
    "READING_STATEMENTS",
    "SAFE_TABLE_FUNCTIONS",
    "UNSAFE_FUNCTIONS",
    "AnalystQueryRefused",
    "QueryLimits",
    "ast_refusal",
    "run_analyst_query",
]

# Root node of ``EXPLAIN AST`` -> the statement an analyst wrote.
READING_STATEMENTS = {
    "SelectWithUnionQuery": "SELECT",
    "ShowTables": "SHOW TABLES/DATABASES/SETTINGS",
    "ShowCreateTableQuery": "SHOW CREATE TABLE",
    "ShowCreateViewQuery": "SHOW CREATE VIEW",
    "ShowCreateDatabaseQuery": "SHOW CREATE DATABASE",
    "ShowColumns": "SHOW COLUMNS",
    "DescribeQuery": "DESCRIBE",
    "ExistsTableQuery": "EXISTS TABLE",
    "ExistsViewQuery": "EXISTS VIEW",
    "ExistsDatabaseQuery": "EXISTS DATABASE",
    "Explain": "EXPLAIN",
}
# Statements whose direct children never include an identifier of their own:
# one there is the FORMAT clause.
_FORMAT_AS_IDENTIFIER = {"SelectWithUnionQuery", "DescribeQuery", "Explain"}
# Table functions that generate rows and reach nothing outside the engine.
SAFE_TABLE_FUNCTIONS = frozenset({"numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "values"})
# Ordinary functions that readonly=1 lets run in chdb and that reach outside
# the store: file(path) reads any file (chdb ignores user_files_path), the
# ai* functions call the HTTP endpoint given in their arguments. Names
# compared in lower case.
UNSAFE_FUNCTIONS = frozenset({"file"})
UNSAFE_FUNCTION_PREFIXES = ("ai",)


class AnalystQueryRefused(ValueError):
    """The statement is not one an analyst may run on the running pipeline; the message says why."""


@dataclass(frozen=True)
class QueryLimits:
    """What one analyst query may use (``CX_QUERY_*`` settings)."""

    timeout_s: float = 30.0
    max_memory_bytes: int = 1_000_000_000
    max_result_rows: int = 100_000

    @classmethod
    def from_settings(cls, settings: Settings) -> "QueryLimits":
        return cls(
            timeout_s=settings.query_timeout_s,
            max_memory_bytes=settings.query_max_memory_mb * 1_000_000,
            max_result_rows=settings.query_max_result_rows,
        )

    def clickhouse_settings(self) -> dict[str, Any]:
        """ClickHouse settings of an analyst query, ``readonly`` last (it forbids changing the others)."""
        return {
            "max_execution_time": self.timeout_s,
            "timeout_overflow_mode": "throw",
            "max_memory_usage": self.max_memory_bytes,
            "max_result_rows": self.max_result_rows,
            "result_overflow_mode": "throw",
            "max_threads": 1,
            "readonly": 1,
        }


def _tree(explain_ast: str) -> list[tuple[int, str]]:
    """``EXPLAIN AST`` lines as (depth, node text); one space of indent per level."""
    out = []
    for line in explain_ast.splitlines():
        if line.strip():
            out.append((len(line) - len(line.lstrip(" ")), line.strip()))
    return out


def ast_refusal(explain_ast: str) -> str | None:
    """None when ClickHouse's tree of one statement is one an analyst may run, else why not.

    ``explain_ast`` is the output of ``EXPLAIN AST <statement>``.
    """
    nodes = _tree(explain_ast)
    if not nodes:
        return "empty query"
    root = nodes[0][1].split()[0]
    if root not in READING_STATEMENTS:
        return f"only reading statements (SELECT, SHOW, DESCRIBE, EXISTS, EXPLAIN) run here, got {root}"
    stack: list[str] = []  # stack[d]: the kind of the current node at depth d
    for depth, text in nodes:
        kind = text.split()[0]
        parent = stack[depth - 1] if 0 < depth <= len(stack) else ""
        stack[depth:] = [kind]
        if depth == 1 and kind == "Literal":
            return "INTO OUTFILE is not allowed: the answer comes back to the caller"
        if depth == 1 and kind == "Identifier" and root in _FORMAT_AS_IDENTIFIER:
            return "FORMAT is chosen by the query endpoint: leave it out"
        if kind == "Function" and parent == "TableExpression":
            name = text.split()[1]
            if name.lower() not in SAFE_TABLE_FUNCTIONS:
                return f"table function {name}() is not allowed (allowed: {', '.join(sorted(SAFE_TABLE_FUNCTIONS))})"
        elif kind == "Function" and _reaches_outside(text.split()[1]):
            return f"function {text.split()[1]}() is not allowed: it reads files or calls other services"
    return None


def _reaches_outside(function: str) -> bool:
    name = function.lower()
    return name in UNSAFE_FUNCTIONS or name.startswith(UNSAFE_FUNCTION_PREFIXES)


def run_analyst_query(ch: ClickHouse, sql: str, limits: QueryLimits) -> tuple[list[str], list[tuple]]:
    """Run an analyst's statement read-only, alone and within ``limits``; its columns and rows.

    Raises AnalystQueryRefused for a statement that is not allowed, and
    ClickHouseError for what ClickHouse refused or failed (read-only mode,
    syntax, a second statement, a limit reached).
    """
    if not sql.strip():
        raise AnalystQueryRefused("empty query")
    settings = limits.clickhouse_settings()
    open_session = getattr(ch, "read_only_session", None)
    if open_session is None:
        read_only_query = getattr(ch, "read_only_query", None)
        if read_only_query is None:
            raise ClickHouseError(f"{ch!r} has no read-only query path")
        return read_only_query(sql, settings)
    session = open_session(settings)
    try:
        refusal = ast_refusal(session.explain_ast(sql))
        if refusal is not None:
            raise AnalystQueryRefused(refusal)
        return session.query(sql)
    finally:
        session.close()
