"""The messages of PostgreSQL's built-in logical decoding output plugin, ``pgoutput``
(protocol version 1, text values), as the site's capture reads them from its slot
(replicator/wal.py). Message formats: PostgreSQL's "Logical Replication Message
Formats". Only what the capture needs is kept: relations (names, columns, types),
transactions (commit LSN and time, origin) and row changes.
"""

from __future__ import annotations

import datetime as dt
import struct
from dataclasses import dataclass, field

# PostgreSQL's epoch for timestamps on the wire.
_PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
# Types whose text form is JSON already: spliced into a row's JSON as they are.
JSON_TYPES = frozenset({114, 3802})  # json, jsonb


class ProtocolError(ValueError):
    """A message that is not what pgoutput sends."""


@dataclass(frozen=True)
class Column:
    name: str
    type_oid: int
    key: bool


@dataclass(frozen=True)
class Relation:
    oid: int
    namespace: str
    name: str
    columns: tuple[Column, ...]


@dataclass
class Change:
    """One row change. ``values``: column -> text value (None: NULL); a column whose
    value did not change and lives out of line (TOAST) is absent."""

    op: str  # 'I', 'U' or 'D'
    relation: Relation
    values: dict[str, str | None]


@dataclass
class Transaction:
    xid: int
    final_lsn: int
    commit_time: dt.datetime
    origin: str | None = None
    changes: list[Change] = field(default_factory=list)
    end_lsn: int = 0  # known at its commit


class Reader:
    """Parses a stream of pgoutput messages into whole transactions (in commit order:
    the plugin sends a transaction once it committed). Relations are remembered across
    transactions, as the protocol expects."""

    def __init__(self) -> None:
        self.relations: dict[int, Relation] = {}
        self._open: Transaction | None = None

    @property
    def open_transaction(self) -> Transaction | None:
        """The transaction being read (its commit not seen yet)."""
        return self._open

    def feed(self, data: bytes | memoryview) -> Transaction | None:
        """One message; returns the transaction its commit completes."""
        buf = bytes(data)
        if not buf:
            raise ProtocolError("empty message")
        kind = buf[0:1]
        if kind == b"B":
            final_lsn, ts, xid = struct.unpack_from("!qqI", buf, 1)
            self._open = Transaction(xid, final_lsn, _time(ts))
            return None
        if kind == b"C":
            _flags, _commit_lsn, end_lsn, _ts = struct.unpack_from("!bqqq", buf, 1)
            txn = self._txn(kind)
            txn.end_lsn = end_lsn
            self._open = None
            return txn
        if kind == b"O":
            name, _ = _string(buf, 9)
            self._txn(kind).origin = name
            return None
        if kind == b"R":
            self._relation(buf)
            return None
        if kind in (b"I", b"U", b"D"):
            self._txn(kind).changes.append(self._change(kind.decode(), buf))
            return None
        if kind in (b"Y", b"T", b"M"):
            # Types (names only), truncations (the capture does not replicate a
            # TRUNCATE: a clinic's records are deleted row by row) and messages.
            return None
        raise ProtocolError(f"unknown pgoutput message {kind!r}")

    def _txn(self, kind: bytes) -> Transaction:
        if self._open is None:
            raise ProtocolError(f"message {kind!r} outside a transaction")
        return self._open

    def _relation(self, buf: bytes) -> None:
        (oid,) = struct.unpack_from("!I", buf, 1)
        namespace, pos = _string(buf, 5)
        name, pos = _string(buf, pos)
        pos += 1  # replica identity
        (ncols,) = struct.unpack_from("!h", buf, pos)
        pos += 2
        columns = []
        for _ in range(ncols):
            flags = buf[pos]
            col_name, pos = _string(buf, pos + 1)
            type_oid, _typmod = struct.unpack_from("!Ii", buf, pos)
            pos += 8
            columns.append(Column(col_name, type_oid, bool(flags & 1)))
        self.relations[oid] = Relation(oid, namespace, name, tuple(columns))

    def _change(self, op: str, buf: bytes) -> Change:
        (oid,) = struct.unpack_from("!I", buf, 1)
        relation = self.relations.get(oid)
        if relation is None:
            raise ProtocolError(f"a change of relation {oid} before its Relation message")
        pos = 5
        tag = buf[pos : pos + 1]
        if op == "U" and tag in (b"K", b"O"):
            _, pos = _tuple(relation, buf, pos + 1)  # the old key or row: not needed
            tag = buf[pos : pos + 1]
        if op in ("I", "U") and tag != b"N":
            raise ProtocolError(f"expected a new tuple in {op!r}, got {tag!r}")
        if op == "D" and tag not in (b"K", b"O"):
            raise ProtocolError(f"expected a key or old tuple in a delete, got {tag!r}")
        values, _ = _tuple(relation, buf, pos + 1)
        return Change(op, relation, values)


def _time(micros: int) -> dt.datetime:
    return _PG_EPOCH + dt.timedelta(microseconds=micros)


def _string(buf: bytes, pos: int) -> tuple[str, int]:
    end = buf.index(b"\0", pos)
    return buf[pos:end].decode(), end + 1


def _tuple(relation: Relation, buf: bytes, pos: int) -> tuple[dict[str, str | None], int]:
    (ncols,) = struct.unpack_from("!h", buf, pos)
    pos += 2
    if ncols > len(relation.columns):
        raise ProtocolError(
            f"{ncols} values for the {len(relation.columns)} columns of {relation.name}"
        )
    values: dict[str, str | None] = {}
    for col in relation.columns[:ncols]:
        kind = buf[pos : pos + 1]
        pos += 1
        if kind == b"n":
            values[col.name] = None
        elif kind == b"u":
            continue  # unchanged out-of-line value: left as it is
        elif kind == b"t":
            (length,) = struct.unpack_from("!i", buf, pos)
            pos += 4
            values[col.name] = buf[pos : pos + length].decode()
            pos += length
        else:
            raise ProtocolError(f"unknown column value kind {kind!r}")
    return values, pos
