"""Apply the versioned DDL files ``sinks/ddl/NNNN_name.sql`` once each, in order.

Each file is a list of statements separated by ``;`` at the end of a line,
written in the portable subset described in ``sinks/__init__``. Applied
versions are recorded in ``cx.schema_migrations`` with the file's checksum.
Every statement uses ``IF NOT EXISTS`` (or ``DROP ... IF EXISTS`` before a
re-create, or is an ``ADD COLUMN``: ClickHouse 18.16 has no ``ADD COLUMN IF
NOT EXISTS``, so a column that already exists counts as added), so two workers migrating the same server at once both succeed:
they may both run a file, which changes nothing the second time, and the
table keeps one row per version (ReplacingMergeTree).

A migration that cannot be written with ``IF NOT EXISTS`` (a table copied
into a new one that then takes its name: ``0008_events_first_wins.sql``)
carries a guard, a comment line ``-- cx:done-when <SELECT>``: a query whose
first cell is non-zero once the migration's effect is in place. It is asked
before each statement and after a statement fails; once it holds, the rest
of the file is skipped and the migration recorded. So a second worker that
meets the first one's finished swap, or a start after a crash between the
swap and its record, finishes instead of failing.

To change the schema add a new file; editing an applied file is refused
(its checksum no longer matches), because servers that already ran it
would silently differ from new ones.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path

from sinks.client import ClickHouse, ClickHouseError

__all__ = ["DATABASE", "DDL_DIR", "Migration", "MigrationError", "load_migrations", "migrate", "split_statements"]

DATABASE = "cx"
DDL_DIR = Path(__file__).parent / "ddl"
MIGRATIONS_TABLE = "cx.schema_migrations"

_BOOTSTRAP = (
    "CREATE DATABASE IF NOT EXISTS cx",
    "CREATE TABLE IF NOT EXISTS cx.schema_migrations"
    " (version UInt32, name String, checksum String, applied_at DateTime('UTC'))"
    " ENGINE = ReplacingMergeTree() ORDER BY version",
)
_FILE_NAME = re.compile(r"^(\d{4})_(\w+)\.sql$")
_DONE_WHEN = re.compile(r"^\s*--\s*cx:done-when\s+(.+?)\s*$", re.MULTILINE)


class MigrationError(RuntimeError):
    """The DDL files are inconsistent with each other or with what was applied."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]
    checksum: str
    done_when: str | None = None  # a guard query (see the module docstring)


def split_statements(text: str) -> list[str]:
    """Statements of a DDL file: a ``;`` ending a code line ends one; comment-only parts are dropped."""
    out: list[str] = []
    lines: list[str] = []

    def close() -> None:
        code = [line for line in lines if line.strip() and not line.lstrip().startswith("--")]
        if code:
            out.append("\n".join(lines).strip())
        lines.clear()

    for line in text.splitlines():
        stripped = line.rstrip()
        if stripped.endswith(";") and not stripped.lstrip().startswith("--"):
            lines.append(stripped[:-1])
            close()
        else:
            lines.append(line)
    close()
    return out


def load_migrations(ddl_dir: Path = DDL_DIR) -> list[Migration]:
    """All ``NNNN_name.sql`` files of ``ddl_dir`` in version order."""
    found: dict[int, Migration] = {}
    for path in sorted(ddl_dir.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: DDL files are named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"version {version} is used by {found[version].name} and {path.stem}")
        text = path.read_text(encoding="utf-8")
        checksum = hashlib.sha256(text.encode()).hexdigest()
        guards = _DONE_WHEN.findall(text)
        if len(guards) > 1:
            raise MigrationError(f"{path.name}: more than one cx:done-when guard")
        found[version] = Migration(
            version, path.stem, tuple(split_statements(text)), checksum, guards[0] if guards else None
        )
    return [found[v] for v in sorted(found)]


def _run(ch: ClickHouse, statement: str) -> None:
    try:
        ch.execute(statement)
    except ClickHouseError as exc:
        # Two workers racing on CREATE ... IF NOT EXISTS: the loser may still
        # see "already exists" from older servers. The object is there: done.
        upper = statement.upper()
        if ("IF NOT EXISTS" in upper or " ADD COLUMN " in upper) and "already exists" in str(exc):
            return
        raise


def _holds(ch: ClickHouse, query: str) -> bool:
    rows = ch.execute(query)
    return bool(rows and rows[0] and rows[0][0])


def migrate(ch: ClickHouse, ddl_dir: Path = DDL_DIR) -> list[str]:
    """Apply the migrations not yet recorded; return their names (empty when up to date).

    Runs at worker start-up, before anything is written. Raises
    ClickHouseError when a statement fails (nothing after it runs and the
    version stays unrecorded, so the next start retries it) and
    MigrationError when an applied file was edited.
    """
    for statement in _BOOTSTRAP:
        _run(ch, statement)
    applied = {
        version: checksum
        for version, checksum in ch.execute("SELECT version, checksum FROM cx.schema_migrations FINAL")
    }
    done = []
    for migration in load_migrations(ddl_dir):
        if migration.version in applied:
            if applied[migration.version] != migration.checksum:
                raise MigrationError(
                    f"{migration.name}.sql changed after it was applied; add a new migration file instead"
                )
            continue
        for statement in migration.statements:
            if migration.done_when is not None and _holds(ch, migration.done_when):
                break
            try:
                _run(ch, statement)
            except ClickHouseError:
                if migration.done_when is not None and _holds(ch, migration.done_when):
                    break  # another worker finished it meanwhile
                raise
        row = (migration.version, migration.name, migration.checksum, int(time.time()))
        ch.insert(MIGRATIONS_TABLE, ["version", "name", "checksum", "applied_at"], [row])
        done.append(migration.name)
    return done
