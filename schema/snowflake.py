"""Snowflake ids: 41 bits ms since 2020-01-01 | 12 bits node | 10 bits sequence.

Generated in PostgreSQL (scsync_snowflake(), schema/sql/baseline_capture.sql);
this module only decodes and composes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
NODE_BITS = 12
SEQUENCE_BITS = 10
MAX_NODE = (1 << NODE_BITS) - 1
MAX_SEQUENCE = (1 << SEQUENCE_BITS) - 1


@dataclass(frozen=True)
class Snowflake:
    ms: int
    node: int
    sequence: int

    @property
    def timestamp(self) -> datetime:
        return EPOCH + timedelta(milliseconds=self.ms)


def decode(value: int) -> Snowflake:
    if value < 0 or value >= 1 << 63:
        raise ValueError(f"not a snowflake id: {value}")
    return Snowflake(
        ms=value >> (NODE_BITS + SEQUENCE_BITS),
        node=(value >> SEQUENCE_BITS) & MAX_NODE,
        sequence=value & MAX_SEQUENCE,
    )


def compose(ms: int, node: int, sequence: int) -> int:
    if not 0 <= node <= MAX_NODE:
        raise ValueError(f"node must be within 0..{MAX_NODE}, got {node}")
    if not 0 <= sequence <= MAX_SEQUENCE:
        raise ValueError(f"sequence must be within 0..{MAX_SEQUENCE}, got {sequence}")
    return (ms << (NODE_BITS + SEQUENCE_BITS)) | (node << SEQUENCE_BITS) | sequence
