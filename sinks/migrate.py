"""Apply the versioned DDL files ``sinks/ddl/NNNN_name.sql`` once each, in order.

Each file is a list of statements separated by ``;`` at the end of a line,
written in the portable subset described in ``sinks/__init__``. Applied
versions are recorded in ``cx.schema_migrations`` with the file's checksum.
A worker with files to apply on a server takes ``MigrationLock`` first, so
workers starting together migrate one after the other (ClickHouse 18.16
deadlocks two at once for good); a worker with nothing to apply takes no
lock. Every statement still uses ``IF NOT EXISTS`` (or ``DROP ... IF EXISTS`` before a
re-create, or is an ``ADD COLUMN``: ClickHouse 18.16 has no ``ADD COLUMN IF
NOT EXISTS``, so a column that already exists counts as added), so a file
run again after a crash in its middle changes nothing the second time, and
the table keeps one row per version (ReplacingMergeTree).

A migration that cannot be written with ``IF NOT EXISTS`` (a table copied
into a new one that then takes its name: ``0008_events_first_wins.sql``)
carries a guard, a comment line ``-- cx:done-when <SELECT>``: a query whose
first cell is non-zero once the migration's effect is in place. It is asked
before each statement and after a statement fails (then for up to 5 s:
another worker may be one statement short of the end); once it holds, the
rest of the file is skipped and the migration recorded. So a second worker that
meets the first one's finished swap, or a start after a crash between the
swap and its record, finishes instead of failing. ClickHouse 18.16 fails a
read of ``system.tables`` now and then ("Table cx.x doesn't exist") while
another connection renames or drops a table, as a second worker's
migration does: such reads (the guards, the layout check) are asked again.

To change the schema add a new file; editing an applied file is refused
(its checksum no longer matches), because servers that already ran it
would silently differ from new ones.

With a cluster name (``CX_CLICKHOUSE_CLUSTER``) every statement, the
migrations table's too, is rendered for the cluster first
(``sinks.cluster``: replicated ``_local`` tables, Distributed tables under
the plain names, ``ON CLUSTER``), so the same files serve both layouts. A
file with the line ``-- cx:single-server`` builds something only one
server has use for (``0015_event_id_set.sql``): on a cluster it is recorded
without running.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from sinks.client import ClickHouse, ClickHouseError, connection_of_its_own
from sinks.cluster import ClusterDDL, ClusterDDLError

__all__ = [
    "DATABASE",
    "DDL_DIR",
    "LOCK_TABLE",
    "Migration",
    "MigrationError",
    "MigrationLock",
    "catalog_read",
    "load_migrations",
    "migrate",
    "split_statements",
]

log = logging.getLogger(__name__)

DATABASE = "cx"
DDL_DIR = Path(__file__).parent / "ddl"
MIGRATIONS_TABLE = "cx.schema_migrations"
LOCK_TABLE = "cx.migration_lock"

_BOOTSTRAP = (
    "CREATE DATABASE IF NOT EXISTS cx",
    "CREATE TABLE IF NOT EXISTS cx.schema_migrations"
    " (version UInt32, name String, checksum String, applied_at DateTime('UTC'))"
    " ENGINE = ReplacingMergeTree() ORDER BY version",
)
_FILE_NAME = re.compile(r"^(\d{4})_(\w+)\.sql$")
_DONE_WHEN = re.compile(r"^\s*--\s*cx:done-when\s+(.+?)\s*$", re.MULTILINE)
_SINGLE_SERVER = re.compile(r"^\s*--\s*cx:single-server\s*$", re.MULTILINE)


class MigrationError(RuntimeError):
    """The DDL files are inconsistent with each other or with what was applied."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]
    checksum: str
    done_when: str | None = None  # a guard query (see the module docstring)
    single_server: bool = False  # recorded without running on a cluster


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
            version,
            path.stem,
            tuple(split_statements(text)),
            checksum,
            guards[0] if guards else None,
            bool(_SINGLE_SERVER.search(text)),
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


CATALOG_READ_ATTEMPTS = 20


def catalog_read(ch: ClickHouse, query: str, attempts: int = CATALOG_READ_ATTEMPTS) -> list[tuple]:
    """``query`` over ``system.tables``, asked again when it met a table that another connection renamed or dropped.

    ClickHouse 18.16 lists a database's tables, then reads each one; a table
    renamed or dropped in between fails the whole query with "doesn't
    exist" (215 of 14,043 such queries while another connection created,
    renamed and dropped a table in a loop). The next read lists again.
    """
    for attempt in range(1, attempts):
        try:
            return ch.execute(query)
        except ClickHouseError as exc:
            if "doesn't exist" not in str(exc):
                raise
            time.sleep(0.005 * attempt)
    return ch.execute(query)  # the last attempt: its error is the caller's


def _holds(ch: ClickHouse, query: str) -> bool:
    rows = catalog_read(ch, query)
    return bool(rows and rows[0] and rows[0][0])


GUARD_WAIT_S = 5.0


def _holds_soon(ch: ClickHouse, query: str, wait_s: float = GUARD_WAIT_S) -> bool:
    """The guard after a statement failed: another worker may be in the middle of the same swap.

    Its statements can fail this worker's (a table it just renamed) before
    its own last one makes the guard hold, so the guard is asked again for
    up to ``wait_s``.
    """
    deadline = time.monotonic() + wait_s
    while True:
        if _holds(ch, query):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _show_create(ch: ClickHouse, table: str) -> str | None:
    try:
        return ch.execute(f"SHOW CREATE TABLE {table}")[0][0]
    except ClickHouseError:
        return None


def _migrations_engine(ch: ClickHouse) -> str | None:
    """The engine of cx.schema_migrations on this server, None before the first migration."""
    rows = catalog_read(ch, "SELECT engine FROM system.tables WHERE database = 'cx' AND name = 'schema_migrations'")
    return rows[0][0] if rows else None


def _bootstrap(ch: ClickHouse, cluster: ClusterDDL | None) -> None:
    engine = _migrations_engine(ch)
    if cluster is None:
        if engine == "Distributed":
            raise MigrationError(
                "the database cx on this server was created in cluster mode: set CX_CLICKHOUSE_CLUSTER to its cluster"
            )
        for statement in _BOOTSTRAP:
            _run(ch, statement)
        return
    if engine == "Distributed":
        # Already there: no ON CLUSTER statement, so a start with a replica
        # down does not wait for it.
        return
    if engine is not None:
        raise MigrationError(
            f"the database cx on this server holds single-node tables (cx.schema_migrations is {engine}); "
            "cluster mode starts from a database cx that does not exist yet (docs/clickhouse.md, Cluster mode)"
        )
    for statement in _BOOTSTRAP:
        for rendered in cluster.render(statement, 0, lambda table: _show_create(ch, table)):
            _run(ch, rendered)


# A table another connection dropped or is dropping (18.16 says either).
_GONE = re.compile(r"doesn't exist|is dropped|being dropped")
LOCK_BEAT_S = 1.0
LOCK_STALE_S = 30.0
LOCK_POLL_S = 0.2


class MigrationLock:
    """One worker at a time migrates a server: ``cx.migration_lock``, a table only one can create.

    ClickHouse 18.16 deadlocks a copy-and-swap migration run by two workers
    at once: one worker's ``INSERT INTO cx.events_0008 SELECT ... FROM
    cx.events`` and the other's ``RENAME TABLE cx.events TO cx.events_0007,
    cx.events_0008 TO cx.events`` each wait for a table lock the other
    holds, ``KILL QUERY`` cannot end either, and every later read of
    ``cx.events`` (``system.columns`` too) waits behind them until the server
    restarts (seen once in 173 runs of two workers migrating an empty
    server). So a worker with migrations to apply first creates
    ``cx.migration_lock`` (``CREATE TABLE`` without ``IF NOT EXISTS``: of two
    workers one gets "already exists"), applies them, and drops it.

    The holder adds a row to the table every ``beat_s`` seconds from a
    connection of its own, also while a long copy runs. A waiter polls the
    holder and the number of rows; when that number has not changed for
    ``stale_s`` seconds of the waiter's own clock (the holder was killed, or
    the server restarted and the Memory table lost its rows), the lock is
    stale: the waiter renames the table to a name of its own, checks that
    it took the stale lock and not one created meanwhile (else it puts it
    back), drops it, and takes the lock. The embedded store has one owner
    and no lock.
    """

    def __init__(
        self,
        ch: ClickHouse,
        *,
        beat_s: float | None = None,
        stale_s: float | None = None,
        poll_s: float | None = None,
    ) -> None:
        self.ch = ch
        self.beat_s = LOCK_BEAT_S if beat_s is None else beat_s
        self.stale_s = LOCK_STALE_S if stale_s is None else stale_s
        self.poll_s = LOCK_POLL_S if poll_s is None else poll_s
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._beat_ch: ClickHouse | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _state(self, table: str = LOCK_TABLE) -> tuple[str, int] | None:
        """(holder, rows) of the lock table, None when there is none."""
        try:
            rows = self.ch.execute(f"SELECT any(holder), count() FROM {table}")
        except ClickHouseError as exc:
            if _GONE.search(str(exc)):
                return None
            raise
        return (rows[0][0], rows[0][1]) if rows else ("", 0)

    def acquire(self) -> None:
        seen: tuple[str, int] | None = None
        changed_at = time.monotonic()
        told = False
        while True:
            try:
                self.ch.execute(f"CREATE TABLE {LOCK_TABLE} (holder String, beat UInt64) ENGINE = Memory")
            except ClickHouseError as exc:
                if "already exists" not in str(exc) and not _GONE.search(str(exc)):
                    raise
            else:
                self._start_beating()
                return
            state = self._state()
            if state is None:  # released meanwhile: try again soon
                time.sleep(0.01)
                continue
            now = time.monotonic()
            if state != seen:
                seen, changed_at = state, now
            elif now - changed_at >= self.stale_s:
                if self._break(state):
                    log.warning(
                        "took over the migration lock of %s: no heartbeat for %.0f s", state[0] or "a holder", self.stale_s
                    )
                seen, changed_at = None, time.monotonic()
                continue
            if not told:
                # WARNING, seen at the workers' default log level: a start that waits says why.
                log.warning("waiting for %s to finish migrating ClickHouse (%s)", state[0] or "another worker", LOCK_TABLE)
                told = True
            time.sleep(self.poll_s)

    def _break(self, stale: tuple[str, int]) -> bool:
        """Remove the lock table seen as ``stale``; False when it was gone or turned out to be alive."""
        private = f"{LOCK_TABLE}_stale_{uuid.uuid4().hex[:12]}"
        try:
            self.ch.execute(f"RENAME TABLE {LOCK_TABLE} TO {private}")
        except ClickHouseError as exc:
            if _GONE.search(str(exc)):
                return False
            raise
        if self._state(private) != stale:
            # Another waiter broke the stale lock and took a new one in between: give it back.
            try:
                self.ch.execute(f"RENAME TABLE {private} TO {LOCK_TABLE}")
            except ClickHouseError as exc:
                log.warning("could not give back the migration lock taken by mistake (%s): %s", private, exc)
            return False
        self.ch.execute(f"DROP TABLE IF EXISTS {private}")
        return True

    def _start_beating(self) -> None:
        self.ch.insert(LOCK_TABLE, ["holder", "beat"], [(self.holder, 0)])
        self._beat_ch = connection_of_its_own(self.ch)
        self._thread = threading.Thread(target=self._beat, name="migration-lock-beat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        beat = 0
        assert self._beat_ch is not None
        while not self._stop.wait(self.beat_s):
            beat += 1
            try:
                self._beat_ch.insert(LOCK_TABLE, ["holder", "beat"], [(self.holder, beat)])
            except ClickHouseError as exc:
                log.warning("migration lock heartbeat failed: %s", exc)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._beat_ch is not None and self._beat_ch is not self.ch:
            self._beat_ch.close()
        state = self._state()
        if state is not None and state[0] == self.holder:
            self.ch.execute(f"DROP TABLE IF EXISTS {LOCK_TABLE}")
        else:
            log.warning("the migration lock was no longer this worker's when it finished (%s)", state)

    def __enter__(self) -> MigrationLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def migrate(ch: ClickHouse, ddl_dir: Path = DDL_DIR, cluster: str = "") -> list[str]:
    """Apply the migrations not yet recorded; return their names (empty when up to date).

    Runs at worker start-up, before anything is written. ``cluster``: the
    ClickHouse cluster whose servers all get every table (``sinks.cluster``);
    empty for one server. Raises ClickHouseError when a statement fails
    (nothing after it runs and the version stays unrecorded, so the next
    start retries it) and MigrationError when an applied file was edited,
    a statement cannot be rendered for the cluster, or the database was
    made in the other layout.
    """
    layout = ClusterDDL(cluster) if cluster else None
    _bootstrap(ch, layout)
    migrations = load_migrations(ddl_dir)
    pending = _pending(ch, layout, migrations)
    if not pending:
        return []  # up to date: no lock (every restart of every worker comes here)
    if not _on_a_server(ch):  # the embedded store: one owner, no one to wait for
        return _apply(ch, layout, pending)
    with MigrationLock(ch):
        # Read again under the lock: what another worker applied while this one waited is skipped.
        return _apply(ch, layout, _pending(ch, layout, migrations))


def _on_a_server(ch: ClickHouse) -> bool:
    from sinks.backend_server import ServerClickHouse

    return isinstance(ch, ServerClickHouse)


def _applied(ch: ClickHouse, layout: ClusterDDL | None) -> dict[int, str]:
    if layout is not None:
        # This server's copy of the versions table may lag the replica that a
        # worker just migrated through: fetch what it has applied first.
        _run(ch, "SYSTEM SYNC REPLICA cx.schema_migrations_local")
    return {
        version: checksum
        for version, checksum in ch.execute("SELECT version, checksum FROM cx.schema_migrations FINAL")
    }


def _pending(ch: ClickHouse, layout: ClusterDDL | None, migrations: list[Migration]) -> list[Migration]:
    """The migrations not applied yet; MigrationError for an applied file that was edited."""
    applied = _applied(ch, layout)
    for migration in migrations:
        if migration.version in applied and applied[migration.version] != migration.checksum:
            raise MigrationError(f"{migration.name}.sql changed after it was applied; add a new migration file instead")
    return [m for m in migrations if m.version not in applied]


def _apply(ch: ClickHouse, layout: ClusterDDL | None, pending: list[Migration]) -> list[str]:
    """Run the ``pending`` migrations in order, each recorded once its statements ran (or its guard held)."""
    done = []
    for migration in pending:
        for statement in () if layout is not None and migration.single_server else migration.statements:
            if migration.done_when is not None and _holds(ch, migration.done_when):
                break
            try:
                if layout is None:
                    _run(ch, statement)
                    continue
                try:
                    rendered = layout.render(statement, migration.version, lambda table: _show_create(ch, table))
                except ClusterDDLError as exc:
                    raise MigrationError(f"{migration.name}.sql: {exc}") from exc
                for one in rendered:
                    _run(ch, one)
            except ClickHouseError:
                if migration.done_when is not None and _holds_soon(ch, migration.done_when):
                    break  # another worker finished it meanwhile
                raise
        row = (migration.version, migration.name, migration.checksum, int(time.time()))
        ch.insert(MIGRATIONS_TABLE, ["version", "name", "checksum", "applied_at"], [row])
        done.append(migration.name)
    return done
