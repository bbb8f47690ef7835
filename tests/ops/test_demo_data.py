"""The demo's sample files are what they claim: valid PNGs, a volume of the asked size."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

from scsync.demo.data import png_bytes, write_volume


def test_png_is_a_valid_grayscale_png() -> None:
    data = png_bytes(40, 24, seed=3)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks[kind] = body
        pos += 12 + length
    assert list(chunks) == [b"IHDR", b"IDAT", b"IEND"]
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (width, height, depth, color) == (40, 24, 8, 0)
    raw = zlib.decompress(chunks[b"IDAT"])
    assert len(raw) == height * (width + 1)
    assert all(raw[y * (width + 1)] == 0 for y in range(height))  # filter type None
    assert len(set(raw)) > 20  # an image, not a flat fill
    assert png_bytes(40, 24, seed=4) != data


def test_volume_has_the_size_and_hash_it_reports(tmp_path: Path) -> None:
    path = tmp_path / "v.vol"
    sha, size = write_volume(path, 3 * 1024 * 1024)
    assert path.stat().st_size == size
    assert 2.5 * 1024 * 1024 < size <= 3 * 1024 * 1024
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    assert path.read_bytes().startswith(b"SCVOL1 dims=256x256x")
