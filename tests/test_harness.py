"""The harness picks its PostgreSQL from the environment."""

from __future__ import annotations

import pytest

from tests.pg import select_backend


def test_backend_selection() -> None:
    assert select_backend({}) == "embedded"
    assert select_backend({"SCSYNC_TEST_PG_URL": "postgresql://x@h/db"}) == "url"
    assert select_backend({"SCSYNC_TEST_PG": "testcontainers"}) == "testcontainers"
    # An explicit URL wins over everything else.
    assert (
        select_backend(
            {"SCSYNC_TEST_PG": "testcontainers", "SCSYNC_TEST_PG_URL": "postgresql://h/d"}
        )
        == "url"
    )
    with pytest.raises(ValueError, match="SCSYNC_TEST_PG"):
        select_backend({"SCSYNC_TEST_PG": "sqlite"})
