"""Cluster mode: the single-node DDL files rendered for a ClickHouse cluster.

With ``CX_CLICKHOUSE_CLUSTER=<name>`` every statement of ``sinks/ddl/*.sql``
(and the migrations table) is rewritten before it runs, so no migration is
written twice and a new one needs no special case:

* ``CREATE TABLE IF NOT EXISTS cx.t (...) ENGINE = XMergeTree(args) ...``
  becomes two tables, created ``ON CLUSTER`` on every server:
  ``cx.t_local``, ``ReplicatedXMergeTree('/clickhouse/tables/{shard}/cx/t_local/NNNN',
  '{replica}', args)`` (NNNN: the migration that created it, so a table
  dropped and created again by a later migration never meets the
  ZooKeeper leftovers of the old one), and ``cx.t`` itself, a
  ``Distributed`` table over ``cx.t_local`` sharded by a hash of the
  ``ORDER BY`` key (every copy of one id lands on one shard, where FINAL
  meets them all). The writer and the analyst views keep their names:
  they use ``cx.t``.
* ``CREATE VIEW``, ``CREATE DATABASE``: ``ON CLUSTER``, otherwise as written
  (the views read the Distributed tables by their names).
* ``DROP TABLE IF EXISTS cx.t``: the Distributed table and ``cx.t_local``.
* ``ALTER TABLE cx.t ...``: runs on ``cx.t_local`` ``ON CLUSTER`` (for a
  replicated table ClickHouse applies it on one replica and replication
  carries it), then ``cx.t`` is dropped and created again over the altered
  table, with the sharding key it had: 18.16 refuses ``ALTER ... ON
  CLUSTER`` of a non-replicated table in a replicated shard, and a
  Distributed table stores no rows (inserts are synchronous).
* ``RENAME TABLE a TO b, ...``: the ``_local`` tables are renamed ``ON
  CLUSTER``; the Distributed tables of every name involved are dropped and
  each new name gets one over its renamed table (a Distributed table names
  its target, so renaming it would point it at the wrong rows).
* ``INSERT ... SELECT`` (a copy) runs once, as written, through the
  Distributed tables, after ``SYSTEM SYNC REPLICA`` of every table it names,
  so that it copies what the other replicas had written.
* anything else runs once, as written.

A statement this cannot render (another engine, a materialized view) is
refused with ``ClusterDDLError`` before it runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

__all__ = ["ClusterDDL", "ClusterDDLError", "LOCAL_SUFFIX", "check_cluster_name", "zookeeper_path"]

LOCAL_SUFFIX = "_local"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TABLE = r"cx\.([A-Za-z_][A-Za-z0-9_]*)"

_CREATE_DATABASE = re.compile(r"^\s*CREATE\s+DATABASE\s+(IF\s+NOT\s+EXISTS\s+)?(\w+)\s*$", re.I | re.S)
_CREATE_VIEW = re.compile(rf"^(\s*CREATE\s+VIEW\s+(?:IF\s+NOT\s+EXISTS\s+)?){_TABLE}(\s+AS\s.*)$", re.I | re.S)
_CREATE_TABLE = re.compile(
    rf"^(\s*CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?){_TABLE}(\s*\(.*?\)\s*)ENGINE\s*=\s*(\w+)\s*\((.*?)\)(.*)$",
    re.I | re.S,
)
_DROP = re.compile(rf"^(\s*DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?){_TABLE}\s*$", re.I | re.S)
_ALTER = re.compile(rf"^\s*ALTER\s+TABLE\s+{_TABLE}\s+(.*)$", re.I | re.S)
_RENAME = re.compile(r"^\s*RENAME\s+TABLE\s+(.*)$", re.I | re.S)
_RENAME_PAIR = re.compile(rf"^\s*{_TABLE}\s+TO\s+{_TABLE}\s*$", re.I)
_ORDER_BY = re.compile(r"\bORDER\s+BY\s+(\(.*?\)|[A-Za-z_][A-Za-z0-9_]*)", re.I | re.S)
_DISTRIBUTED_ENGINE = re.compile(r"ENGINE\s*=\s*(Distributed\(.*\))\s*$", re.I | re.S)
_OTHER_CREATE = re.compile(r"^\s*CREATE\s", re.I)
_INSERT = re.compile(r"^\s*INSERT\s", re.I)


class ClusterDDLError(ValueError):
    """A DDL statement that cluster mode cannot render; the message says which and why."""


def check_cluster_name(name: str) -> str:
    """``name`` if it is a plain identifier (it is pasted into DDL), else ValueError."""
    if not _NAME.match(name):
        raise ValueError(f"a cluster name is letters, digits and _, not starting with a digit: {name!r}")
    return name


def zookeeper_path(table: str, version: int) -> str:
    """The replicated table's ZooKeeper path: per shard, per table, per creating migration."""
    return f"/clickhouse/tables/{{shard}}/cx/{table}/{version:04d}"


@dataclass(frozen=True)
class ClusterDDL:
    """Renders single-node statements for cluster ``name``.

    ``show_create`` returns ``SHOW CREATE TABLE`` of a table, or ``None`` when
    it does not exist; ALTER and RENAME read the Distributed tables' sharding
    keys with it at the moment they run.
    """

    name: str

    def __post_init__(self) -> None:
        check_cluster_name(self.name)

    @property
    def on_cluster(self) -> str:
        return f" ON CLUSTER {self.name}"

    def render(self, statement: str, version: int, show_create: Callable[[str], str | None]) -> list[str]:
        """The statements to run, in order, for one statement of migration ``version``."""
        statement = "\n".join(line for line in statement.splitlines() if not line.lstrip().startswith("--")).strip()
        if m := _CREATE_DATABASE.match(statement):
            return [f"CREATE DATABASE {m.group(1) or ''}{m.group(2)}{self.on_cluster}"]
        if m := _CREATE_TABLE.match(statement):
            return self._create_table(m, version)
        if m := _CREATE_VIEW.match(statement):
            if re.match(r"^\s*CREATE\s+MATERIALIZED", statement, re.I):
                raise ClusterDDLError("materialized views are not rendered for a cluster")
            return [f"{m.group(1)}cx.{m.group(2)}{self.on_cluster}{m.group(3)}"]
        if _OTHER_CREATE.match(statement):
            raise ClusterDDLError(
                "cluster mode renders CREATE DATABASE, CREATE VIEW and CREATE TABLE cx.name (columns) "
                f"ENGINE = <a MergeTree engine>; cannot render: {statement.strip()[:120]!r}"
            )
        if m := _DROP.match(statement):
            name = m.group(2)
            return [
                f"{m.group(1)}cx.{name}{self.on_cluster}",
                f"{m.group(1)}cx.{name}{LOCAL_SUFFIX}{self.on_cluster}",
            ]
        if m := _ALTER.match(statement):
            name = m.group(1)
            engine = self._distributed_engine(name, show_create)
            return [
                f"ALTER TABLE cx.{name}{LOCAL_SUFFIX}{self.on_cluster} {m.group(2)}",
                f"DROP TABLE IF EXISTS cx.{name}{self.on_cluster}",
                self._distributed(name, engine),
            ]
        if m := _RENAME.match(statement):
            return self._rename(m.group(1), show_create)
        if _INSERT.match(statement):
            # A copy reads this server's replicas: fetch what the others wrote first.
            names = dict.fromkeys(re.findall(_TABLE, statement))
            syncs = [
                f"SYSTEM SYNC REPLICA cx.{name}{LOCAL_SUFFIX}"
                for name in names
                if show_create(f"cx.{name}{LOCAL_SUFFIX}") is not None
            ]
            return [*syncs, statement]
        return [statement]

    def _create_table(self, m: re.Match, version: int) -> list[str]:
        head, name, columns, engine, args, tail = m.groups()
        if not engine.endswith("MergeTree") or engine.startswith("Replicated"):
            raise ClusterDDLError(f"cx.{name}: engine {engine} has no replicated form to render (use a MergeTree engine)")
        order = _ORDER_BY.search(tail)
        if order is None:
            raise ClusterDDLError(f"cx.{name}: no ORDER BY to derive the sharding key from")
        local = f"{name}{LOCAL_SUFFIX}"
        replicated_args = ", ".join(
            part for part in (f"'{zookeeper_path(local, version)}'", "'{replica}'", args.strip()) if part
        )
        return [
            f"{head}cx.{local}{self.on_cluster}{columns}ENGINE = Replicated{engine}({replicated_args}){tail}",
            self._distributed(name, self._sharding(name, order)),
        ]

    def _distributed(self, name: str, engine: str) -> str:
        return f"CREATE TABLE IF NOT EXISTS cx.{name}{self.on_cluster} AS cx.{name}{LOCAL_SUFFIX} ENGINE = {engine}"

    def _distributed_engine(self, name: str, show_create: Callable[[str], str | None]) -> str:
        """``Distributed(cluster, cx, name_local, key)`` of ``cx.name``, as the server shows it.

        When ``cx.name`` is missing but ``cx.name_local`` is there (a migration
        that stopped between dropping and creating it again), the key is
        derived from the local table's ``ORDER BY``, as at creation.
        """
        text = show_create(f"cx.{name}")
        match = _DISTRIBUTED_ENGINE.search(text or "")
        if match is not None:
            return match.group(1)
        local = show_create(f"cx.{name}{LOCAL_SUFFIX}") if text is None else None
        order = _ORDER_BY.search(local or "")
        if order is None:
            raise ClusterDDLError(f"cx.{name} is not a Distributed table of cluster mode: {(text or 'missing')[:160]!r}")
        return self._sharding(name, order)

    def _sharding(self, name: str, order: re.Match) -> str:
        key = order.group(1).strip()
        key = key[1:-1] if key.startswith("(") else key
        return f"Distributed({self.name}, cx, {name}{LOCAL_SUFFIX}, cityHash64({key}))"

    def _rename(self, pairs_text: str, show_create: Callable[[str], str | None]) -> list[str]:
        pairs = []
        for part in pairs_text.split(","):
            m = _RENAME_PAIR.match(part)
            if m is None:
                raise ClusterDDLError(f"cannot render RENAME TABLE part {part.strip()!r}: expected cx.a TO cx.b")
            pairs.append((m.group(1), m.group(2)))
        # The renamed table keeps its sharding key: read them before anything moves.
        engines = {
            target: re.sub(
                rf"(Distributed\(\s*'?\w+'?\s*,\s*'?\w+'?\s*,\s*)'?{source}{LOCAL_SUFFIX}'?",
                rf"\g<1>{target}{LOCAL_SUFFIX}",
                self._distributed_engine(source, show_create),
            )
            for source, target in pairs
        }
        renames = ", ".join(f"cx.{a}{LOCAL_SUFFIX} TO cx.{b}{LOCAL_SUFFIX}" for a, b in pairs)
        names = list(dict.fromkeys(name for pair in pairs for name in pair))
        return [
            f"RENAME TABLE {renames}{self.on_cluster}",
            *(f"DROP TABLE IF EXISTS cx.{name}{self.on_cluster}" for name in names),
            *(self._distributed(target, engines[target]) for _, target in pairs),
        ]
