"""Small helpers shared by the files tests."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from sqlalchemy import text

from tests.pg import TestDatabase

MiB = 1024 * 1024


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(MiB):
            h.update(chunk)
    return h.hexdigest()


def add_patient(tdb: TestDatabase, site_id: int, code: str = "P1") -> int:
    with tdb.engine.begin() as conn:
        return int(
            conn.execute(
                text(
                    "INSERT INTO patients (site_id, patient_code, name) VALUES (:s, :c, 'Pat')"
                    " RETURNING id"
                ),
                {"s": site_id, "c": code},
            ).scalar_one()
        )


def add_image(
    tdb: TestDatabase,
    site_id: int,
    patient_id: int,
    *,
    sha: str | None = None,
    size: int | None = None,
    path: Path | None = None,
    modality: str | None = "CT",
    study_date: Any = None,
    table: str = "images",
) -> int:
    cols: dict[str, Any] = {
        "site_id": site_id,
        "patient_id": patient_id,
        "blob_sha256": sha,
        "blob_size": size,
        "file_name": path.name if path else None,
    }
    if tdb.side == "local":
        cols["local_path"] = str(path) if path else None
    if table == "images":
        cols["modality"] = modality
        cols["study_date"] = study_date
    if table == "project_files":
        cols["name"] = "proj"
    names = ", ".join(cols)
    binds = ", ".join(f":{c}" for c in cols)
    with tdb.engine.begin() as conn:
        return int(
            conn.execute(
                text(f"INSERT INTO {table} ({names}) VALUES ({binds}) RETURNING id"), cols
            ).scalar_one()
        )


def fetch(tdb: TestDatabase, sql: str, **params: Any) -> list[Any]:
    with tdb.engine.connect() as conn:
        return list(conn.execute(text(sql), params).all())


def urandom_file(path: Path, size: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        left = size
        while left:
            n = min(left, MiB)
            f.write(os.urandom(n))
            left -= n
    return sha256_file(path)
