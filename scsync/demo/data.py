"""Sample data of the demo: a clinic's doctors, patients, accounts, 2D X-rays as real
PNG files, one 3D volume and reports, written as the clinic's legacy application
would (plain SQL on the local database, files in its image folder)."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import random
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from schema.replicating import replicating_sync

MiB = 1024 * 1024

PASSWORDS = {"alice": "alice-demo-password", "bob": "bob-demo-password"}
# The vendor's own account on the cloud (site 0, role vendor_admin): every clinic.
VENDOR = ("vendor", "vendor-demo-password")

FIRST_NAMES = [
    "Mina",
    "Jisoo",
    "Hana",
    "Minjun",
    "Seoyeon",
    "Doyun",
    "Yuna",
    "Jiho",
    "Sora",
    "Taeyang",
    "Eun",
    "Haneul",
    "Nari",
    "Joon",
    "Bora",
    "Dahye",
    "Sungmin",
    "Yerin",
    "Kyung",
    "Inho",
]
LAST_NAMES = [
    "Kim",
    "Lee",
    "Park",
    "Choi",
    "Jung",
    "Kang",
    "Cho",
    "Yoon",
    "Jang",
    "Lim",
    "Han",
    "Oh",
    "Seo",
    "Shin",
    "Kwon",
]
MODALITIES_2D = ("PX", "IO", "CEPH")


def png_bytes(width: int, height: int, seed: int) -> bytes:
    """A grayscale PNG that looks like a dental panoramic: an arch of bright 'teeth'."""
    rnd = random.Random(seed)
    teeth = [(rnd.uniform(0.15, 0.85), rnd.uniform(0.35, 0.65)) for _ in range(14)]
    rows = []
    for y in range(height):
        fy = y / height
        line = bytearray(width + 1)  # filter byte 0 per scanline
        for x in range(width):
            fx = x / width
            arch = math.exp(-(((fy - 0.5 - 0.25 * (fx - 0.5) ** 2 * 4) * 6) ** 2))
            tooth = 0.0
            for tx, ty in teeth:
                d2 = ((fx - tx) * 14) ** 2 + ((fy - ty) * 5) ** 2
                if d2 < 1:
                    tooth = max(tooth, 1 - d2)
            value = 30 + 90 * arch + 130 * tooth + rnd.randint(0, 12)
            line[x + 1] = min(255, int(value))
        rows.append(bytes(line))
    raw = b"".join(rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def write_volume(path: Path, size_bytes: int) -> tuple[str, int]:
    """A CT-like volume: a small text header, then 16-bit slices of 256x256 voxels whose
    intensity follows a sphere ('skull') through the stack. Streamed, hashed as written."""
    side = 256
    slice_bytes = side * side * 2
    slices = max(1, (size_bytes - 256) // slice_bytes)
    header = f"SCVOL1 dims={side}x{side}x{slices} dtype=uint16 spacing=0.3mm\n".encode().ljust(256)
    h = hashlib.sha256(header)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.write(header)
        for z in range(slices):
            r = abs(z - slices / 2) / (slices / 2)
            level = int(400 + 1200 * max(0.0, 1 - r * r))
            # One row pattern per slice, repeated: realistic enough and fast to write.
            row = b"".join(
                struct.pack("<H", level if abs(x - side // 2) < side * (1 - r) / 2 else 40)
                for x in range(side)
            )
            data = row * side
            f.write(data)
            h.update(data)
    return h.hexdigest(), 256 + slices * slice_bytes


@dataclass
class Seeded:
    site_id: int
    doctors: list[int] = field(default_factory=list)
    patients: list[int] = field(default_factory=list)
    images: list[int] = field(default_factory=list)
    volume_id: int = 0
    volume_sha: str = ""
    volume_size: int = 0
    reports: list[int] = field(default_factory=list)
    files_bytes: int = 0

    @property
    def rows(self) -> int:
        # + the two user accounts and the report template
        return len(self.doctors) + len(self.patients) + len(self.images) + len(self.reports) + 3


def _insert(conn: psycopg.Connection[Any], table: str, values: dict[str, Any]) -> int:
    # Identifiers come from this module's literals only; values are bound parameters.
    cols = psycopg.sql.SQL(", ").join(psycopg.sql.Identifier(c) for c in values)
    marks = psycopg.sql.SQL(", ").join(psycopg.sql.Placeholder(c) for c in values)
    stmt = psycopg.sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING id").format(
        psycopg.sql.Identifier(table), cols, marks
    )
    row = conn.execute(stmt, values).fetchone()
    assert row is not None
    return int(row[0])


def seed_history(
    libpq_url: str,
    site_id: int,
    store: Path,
    *,
    patients: int,
    images: int,
    volume_bytes: int,
    passwords: dict[str, str],
    seed: int = 7,
) -> Seeded:
    """The clinic's history from before scsync was connected.

    Rows are inserted with change capture off (``scsync.replicating``) and no outbox
    entry, exactly like records that predate the installation: only the first-connection
    backfill can send them, which is the point of the demo's first step.
    """
    from api.passwords import hash_password

    rnd = random.Random(seed + site_id)
    out = Seeded(site_id)
    store.mkdir(parents=True, exist_ok=True)
    with psycopg.connect(libpq_url) as conn, replicating_sync(conn):

        def add(table: str, **values: Any) -> int:
            values.setdefault("site_id", site_id)
            values["revision"] = conn.execute("SELECT scsync_snowflake()").fetchone()[0]  # type: ignore[index]
            return _insert(conn, table, values)

        for i in range(4):
            name = f"Dr. {rnd.choice(LAST_NAMES)} {rnd.choice(FIRST_NAMES)}"
            out.doctors.append(
                add("doctors", name=name, license_no=f"KDA-{site_id}{i:04d}", phone="02-555-0100")
            )
        for username, password in passwords.items():
            add(
                "user_accounts",
                username=username,
                password_hash=hash_password(password),
                role="editor",
                display_name=username.title(),
                doctor_id=out.doctors[0],
            )
        today = dt.date.today()
        for i in range(patients):
            out.patients.append(
                add(
                    "patients",
                    patient_code=f"S{site_id}-{i + 1:05d}",
                    name=f"{rnd.choice(LAST_NAMES)} {rnd.choice(FIRST_NAMES)}",
                    birth_date=today - dt.timedelta(days=rnd.randint(6000, 30000)),
                    sex=rnd.choice("FM"),
                    phone=f"010-{rnd.randint(1000, 9999)}-{rnd.randint(1000, 9999)}",
                    notes="",
                )
            )
        for i in range(images):
            data = png_bytes(160, 96, seed=site_id * 1000 + i)
            path = store / "2d" / f"img{i + 1:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            out.files_bytes += len(data)
            out.images.append(
                add(
                    "images",
                    patient_id=out.patients[i % len(out.patients)],
                    doctor_id=rnd.choice(out.doctors),
                    kind="2d",
                    modality=MODALITIES_2D[i % len(MODALITIES_2D)],
                    study_date=today - dt.timedelta(days=images - i),
                    description="panoramic" if i % 3 == 0 else "intraoral",
                    blob_sha256=hashlib.sha256(data).hexdigest(),
                    blob_size=len(data),
                    file_name=path.name,
                    content_type="image/png",
                    local_path=str(path),
                )
            )
        vol = store / "3d" / "cbct-0001.vol"
        out.volume_sha, out.volume_size = write_volume(vol, volume_bytes)
        out.files_bytes += out.volume_size
        out.volume_id = add(
            "images",
            patient_id=out.patients[0],
            doctor_id=out.doctors[0],
            kind="3d",
            modality="CBCT",
            study_date=today,
            description="CBCT full arch",
            blob_sha256=out.volume_sha,
            blob_size=out.volume_size,
            file_name=vol.name,
            content_type="application/octet-stream",
            local_path=str(vol),
        )
        out.images.append(out.volume_id)
        template = add("report_templates", name="Panoramic findings", body="Findings: ...")
        for i, image_id in enumerate(out.images[: max(1, images // 2)]):
            out.reports.append(
                add(
                    "reports",
                    patient_id=out.patients[i % len(out.patients)],
                    image_id=image_id,
                    doctor_id=rnd.choice(out.doctors),
                    template_id=template,
                    title=f"Report {i + 1}",
                    body="No caries. Bone level within normal limits.",
                )
            )
    return out
