"""What the API knows about each synced table: readable and writable columns, their
JSON types, and the conversions between JSON bodies and database values.

Everything is derived from the declared metadata (schema.tables), so a new synced
table or column needs no code here. Bigint columns (ids, revisions, references)
travel as decimal strings: Snowflakes exceed JavaScript's exact integer range.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import BigInteger, Boolean, Date, DateTime, Integer, Table, Text
from sqlalchemy.dialects.postgresql import JSONB

from api.errors import Forbidden, ValidationFailed
from schema.columns import ACCOUNT_COLUMNS, SECRET_COLUMNS, SERVER_COLUMNS
from schema.tables import SYNCED_TABLES, Side, metadata_for

INT64_MAX: Final = 2**63 - 1
INT32_MAX: Final = 2**31 - 1
ID_PATTERN: Final = r"^[0-9]{1,19}$"
_ID_RE: Final = re.compile(ID_PATTERN)
MAX_TEXT: Final = 100_000

# SERVER_COLUMNS: written by the server, the replicator or the capture triggers, never
# by a client; SECRET_COLUMNS never leave the server; ACCOUNT_COLUMNS (credentials and
# privileges) change only through the account endpoints (api/accounts.py), in any table,
# never by a record write or an edit session. All from schema.columns.
ACCOUNT_TABLES: Final = frozenset({"user_accounts"})
# Tables whose rows are (about) a patient: their reads and changes are audited.
PATIENT_TABLES: Final = frozenset({"patients", "images", "captures", "project_files", "reports"})


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    kind: str  # text, int, bigint, bool, date, datetime, json
    nullable: bool
    has_default: bool

    def json_schema(self) -> dict[str, Any]:
        base: dict[str, Any]
        if self.kind == "bigint":
            base = {"type": "string", "pattern": ID_PATTERN}
        elif self.kind == "int":
            base = {"type": "integer", "minimum": -INT32_MAX - 1, "maximum": INT32_MAX}
        elif self.kind == "bool":
            base = {"type": "boolean"}
        elif self.kind == "date":
            base = {"type": "string", "format": "date"}
        elif self.kind == "datetime":
            base = {"type": "string", "format": "date-time"}
        elif self.kind == "json":
            return {}
        else:
            base = {"type": "string", "maxLength": MAX_TEXT}
        if self.nullable:
            return {"anyOf": [base, {"type": "null"}]}
        return base


@dataclass(frozen=True)
class TableSpec:
    name: str
    side: Side
    columns: tuple[ColumnSpec, ...]
    writable: tuple[str, ...]
    required: tuple[str, ...]
    has_patient: bool
    has_modality: bool
    file_column: str | None

    @property
    def readable(self) -> tuple[ColumnSpec, ...]:
        return tuple(c for c in self.columns if c.name not in SECRET_COLUMNS)

    @property
    def bigint_columns(self) -> frozenset[str]:
        return frozenset(c.name for c in self.columns if c.kind == "bigint")

    def column(self, name: str) -> ColumnSpec:
        return next(c for c in self.columns if c.name == name)


def _kind(table: Table, name: str) -> str:
    t = table.c[name].type
    if isinstance(t, BigInteger):
        return "bigint"
    if isinstance(t, Boolean):
        return "bool"
    if isinstance(t, Integer):
        return "int"
    if isinstance(t, DateTime):
        return "datetime"
    if isinstance(t, Date):
        return "date"
    if isinstance(t, JSONB):
        return "json"
    if isinstance(t, Text):
        return "text"
    raise TypeError(f"no JSON mapping for {table.name}.{name} of type {t!r}")


@functools.cache
def table_specs(side: Side) -> dict[str, TableSpec]:
    md = metadata_for(side)
    specs: dict[str, TableSpec] = {}
    for name, file_column in SYNCED_TABLES.items():
        table = md.tables[name]
        cols = tuple(
            ColumnSpec(
                name=c.name,
                kind=_kind(table, c.name),
                nullable=bool(c.nullable) and not c.primary_key,
                has_default=c.server_default is not None or c.computed is not None,
            )
            for c in table.columns
        )
        writable = tuple(c.name for c in cols if c.name not in SERVER_COLUMNS | ACCOUNT_COLUMNS)
        required = tuple(
            c.name for c in cols if c.name in writable and not c.nullable and not c.has_default
        )
        specs[name] = TableSpec(
            name=name,
            side=side,
            columns=cols,
            writable=writable,
            required=required,
            has_patient="patient_id" in table.c,
            has_modality="modality" in table.c,
            file_column=file_column,
        )
    return specs


def table_spec(side: Side, name: str) -> TableSpec | None:
    return table_specs(side).get(name)


def refuse_account_write(spec: TableSpec) -> None:
    """Record writes and edit sessions never change accounts (see ACCOUNT_COLUMNS)."""
    if spec.name in ACCOUNT_TABLES:
        raise Forbidden(
            f"{spec.name} records are changed only through /v1/accounts, by an admin",
            field="table",
        )


def parse_id(value: Any, field: str) -> int:
    """A bigint id from a path/query/body value (digits, as string or integer)."""
    if isinstance(value, bool):
        raise ValidationFailed(f"{field} must be a decimal id", field=field)
    if isinstance(value, int):
        if 0 <= value <= INT64_MAX:
            return value
        raise ValidationFailed(f"{field} is out of range", field=field)
    if isinstance(value, str) and _ID_RE.match(value):
        number = int(value)
        if number <= INT64_MAX:
            return number
        raise ValidationFailed(f"{field} is out of range", field=field)
    raise ValidationFailed(f"{field} must be a decimal id", field=field)


def _check_text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise ValidationFailed(f"{field} must be a string", field=field)
    if "\x00" in value:
        raise ValidationFailed(f"{field} must not contain NUL characters", field=field)
    if len(value) > MAX_TEXT:
        raise ValidationFailed(f"{field} is longer than {MAX_TEXT} characters", field=field)
    return value


def _check_json(value: Any, field: str) -> Any:
    # PostgreSQL's jsonb cannot hold \u0000 in strings.
    if isinstance(value, str):
        _check_text(value, field)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, field)
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_text(k, field)
            _check_json(v, field)
    return value


def convert_value(col: ColumnSpec, value: Any) -> Any:
    field = col.name
    if value is None:
        if col.nullable:
            return None
        raise ValidationFailed(f"{field} must not be null", field=field)
    if col.kind == "bigint":
        return parse_id(value, field)
    if col.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationFailed(f"{field} must be an integer", field=field)
        if not -INT32_MAX - 1 <= value <= INT32_MAX:
            raise ValidationFailed(f"{field} is out of range", field=field)
        return value
    if col.kind == "bool":
        if not isinstance(value, bool):
            raise ValidationFailed(f"{field} must be true or false", field=field)
        return value
    if col.kind == "date":
        text = _check_text(value, field)
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            raise ValidationFailed(f"{field} must be a date (YYYY-MM-DD)", field=field) from None
    if col.kind == "datetime":
        text = _check_text(value, field)
        try:
            return dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValidationFailed(f"{field} must be an ISO 8601 date-time", field=field) from None
    if col.kind == "json":
        return _check_json(value, field)
    return _check_text(value, field)


def parse_body(spec: TableSpec, body: Any, *, partial: bool) -> dict[str, Any]:
    """Validate a create (partial=False) or update body; return column -> DB value."""
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object", field=None)
    allowed = set(spec.writable)
    for key in body:
        if key not in allowed:
            raise ValidationFailed(f"unknown or read-only field {key!r}", field=key)
    if not partial:
        for key in spec.required:
            if key not in body:
                raise ValidationFailed(f"{key} is required", field=key)
    out: dict[str, Any] = {}
    for key, value in body.items():
        out[key] = convert_value(spec.column(key), value)
    if partial and not out:
        raise ValidationFailed("nothing to change: the body names no field", field=None)
    return out


def to_json_value(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "bigint":
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def row_to_json(spec: TableSpec, row: dict[str, Any]) -> dict[str, Any]:
    return {c.name: to_json_value(c.kind, row.get(c.name)) for c in spec.readable}
