"""Property: whatever sequence of edit sessions and saves (some changing nothing),
the stored A.B version follows the rule, computed here by a model."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockd.db import make_pool
from lockd.manager import LeaseManager, LockdConfig
from lockd.sessions import EditSession
from tests.lockd.conftest import add_patient, row_of
from tests.pg import TestDatabase

pytestmark = pytest.mark.dblevel

# A session is a list of saves; each save sets `notes` to one of a few values, so that
# many saves repeat the stored value and must change nothing.
sessions_strategy = st.lists(
    st.lists(st.sampled_from([None, "a", "b"]), max_size=4), min_size=1, max_size=4
)


def model(sessions: list[list[str | None]]) -> tuple[int, int]:
    major, minor, value = 1, 0, None
    for saves in sessions:
        changed_in_session = False
        for new in saves:
            if new == value:
                continue
            value = new
            if changed_in_session:
                minor += 1
            else:
                major, minor, changed_in_session = major + 1, 0, True
    return major, minor


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(sessions=sessions_strategy)
def test_version_rule_holds_for_any_sequence(
    cloud_db: TestDatabase, sessions: list[list[str | None]]
) -> None:
    rid = add_patient(cloud_db, 1, "V", "Versioned")

    async def run() -> None:
        async with make_pool(cloud_db.url, min_size=1, max_size=1) as pool:
            manager = LeaseManager(pool, LockdConfig(ttl_s=10))
            for saves in sessions:
                session = await EditSession.open(manager, "patients", rid, "cloud:1/prop")
                for value in saves:
                    await session.save({"notes": value})
                await session.close()

    asyncio.run(run())
    row = row_of(cloud_db, rid)
    assert (row["version_major"], row["version_minor"]) == model(sessions)
