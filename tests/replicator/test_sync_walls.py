"""The cloud API's sync endpoints hold the wall between sites: with site 1's token,
every attempt at site 2's rows, records, seqs, conflicts or dead letters is refused
(403 naming the row) and nothing of site 2 changes or shows. Sites hold no database
role on the cloud at all."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import aiohttp
import pytest
from psycopg import sql

from replicator.sites import register_site
from schema.auth import issue_token
from tests.pg import TestDatabase
from tests.world import JWT_SECRET, World, sync

SITE2_TABLES = (
    "patients",
    "images",
    "scsync_outbox",
    "scsync_history",
    "scsync_conflicts",
    "scsync_dead_letters",
    "scsync_inbox",
    "scsync_replication_cursor",
)


def _site2_state(world: World) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    with world.cloud.connect() as c:
        for table in SITE2_TABLES:
            got = c.execute(
                sql.SQL("SELECT to_jsonb(t)::text FROM {} t WHERE site_id = 2 ORDER BY 1").format(
                    sql.Identifier(table)
                )
            ).fetchall()
            out[table] = [r[0] for r in got]
    return out


async def _post(
    world: World, path: str, *, token: str | None = None, body: Any = None, data: Any = None
) -> tuple[int, Any]:
    headers = {"X-Scsync-Holder": "attacker/1"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{world.api.url}/v1/sync/{path}", json=body, data=data, headers=headers) as resp,
    ):
        text = await resp.text()
        try:
            return resp.status, json.loads(text.splitlines()[0]) if text else None
        except json.JSONDecodeError:
            return resp.status, text


def _row(ord_: int, table: str, row_id: int, data: dict[str, Any], revision: int = 77) -> list[Any]:
    now = dt.datetime.now(dt.UTC).isoformat()
    return [ord_, [ord_], table, row_id, "U", revision, None, json.dumps(data), now, None]


def _batch(rows: list[list[Any]], mode: str = "batch", source_lsn: str | None = None) -> bytes:
    head: dict[str, Any] = {
        "mode": mode,
        "source_lsn": source_lsn,
        "columns": {
            "patients": ["id", "site_id", "name", "patient_code", "revision"],
            "images": ["id", "site_id", "patient_id", "revision"],
        },
        "forget": [],
        "source_commit_at": None,
        "peer_schema_revision": None,
        "rows": len(rows),
    }
    return b"\n".join(json.dumps(x).encode() for x in [head, *rows]) + b"\n"


@pytest.fixture
async def seeded(world: World) -> dict[str, int]:
    """Site 2 has a patient and a conflict on the cloud, a dead letter and a pending
    cloud change; site 1 has a patient of its own."""
    with world.site2.local.connect(autocommit=True) as c:
        p2 = c.execute(
            "INSERT INTO patients (site_id, patient_code, name) VALUES (2, 'B-1', 'two') "
            "RETURNING id"
        ).fetchone()
    with world.site1.local.connect(autocommit=True) as c:
        p1 = c.execute(
            "INSERT INTO patients (site_id, patient_code, name) VALUES (1, 'A-1', 'one') "
            "RETURNING id"
        ).fetchone()
    await sync(world.site1)
    await sync(world.site2)
    assert p1 is not None and p2 is not None
    with world.cloud.connect(autocommit=True) as c:
        c.execute("UPDATE patients SET notes = 'cloud edit' WHERE id = %s", (p2[0],))
        seq = c.execute("SELECT max(seq) FROM scsync_outbox WHERE site_id = 2").fetchone()
        conflict = c.execute(
            "INSERT INTO scsync_conflicts (id, table_name, row_id, site_id, base_revision,"
            " local_revision, cloud_revision, detected_on) "
            "VALUES (scsync_snowflake(), 'patients', %s, 2, 1, 2, 3, 'cloud') RETURNING id",
            (p2[0],),
        ).fetchone()
        c.execute(
            "INSERT INTO scsync_dead_letters (lane, table_name, row_id, site_id, revision,"
            " reason, next_retry_at) VALUES ('pull', 'patients', %s, 2, 1, 'x', now())",
            (p2[0],),
        )
    assert seq is not None and conflict is not None
    return {
        "p1": int(str(p1[0])),
        "p2": int(str(p2[0])),
        "seq2": int(str(seq[0])),
        "conflict2": int(str(conflict[0])),
    }


async def _refused(world: World, path: str, match: str, **kw: Any) -> None:
    before = _site2_state(world)
    status, body = await _post(world, path, token=world.site1.token, **kw)
    assert status == 403, (status, body)
    assert body["error"] == "forbidden"
    assert match in body["message"], body["message"]
    assert _site2_state(world) == before


@pytest.mark.parametrize("mode", ["batch", "each"])
async def test_a_batch_with_a_site2_row_is_refused_whole(
    world: World, seeded: dict[str, int], mode: str
) -> None:
    p2 = seeded["p2"]
    own = _row(
        1, "patients", 990001, {"id": 990001, "site_id": 1, "name": "n", "patient_code": "c"}
    )
    # A new row that says it is site 2's.
    foreign = _row(
        2, "patients", 990002, {"id": 990002, "site_id": 2, "name": "x", "patient_code": "x"}
    )
    await _refused(
        world, "push/apply", "may not send patients 990002", data=_batch([own, foreign], mode)
    )
    # Site 2's record, relabelled as site 1's.
    takeover = _row(2, "patients", p2, {"id": p2, "site_id": 1, "name": "x", "patient_code": "x"})
    await _refused(
        world, "push/apply", f"may not change patients {p2}", data=_batch([own, takeover], mode)
    )
    # Site 1's own key with site 2's record id inside the content.
    smuggled = _row(
        2, "patients", 990003, {"id": p2, "site_id": 1, "name": "x", "patient_code": "x"}
    )
    await _refused(
        world, "push/apply", "may not send patients 990003", data=_batch([own, smuggled], mode)
    )
    with world.cloud.connect() as c:  # nothing of the batch was applied
        assert c.execute("SELECT count(*) FROM patients WHERE id = 990001").fetchone() == (0,)


async def test_a_row_referring_to_a_site2_record_is_refused(
    world: World, seeded: dict[str, int]
) -> None:
    image = _row(1, "images", 990010, {"id": 990010, "site_id": 1, "patient_id": seeded["p2"]})
    await _refused(
        world,
        "push/apply",
        f"its patient_id refers to patients {seeded['p2']} of site 2",
        data=_batch([image]),
    )


async def test_acks_and_recovery_naming_site2_seqs_or_records_are_refused(
    world: World, seeded: dict[str, int]
) -> None:
    seq2, p2 = seeded["seq2"], seeded["p2"]
    await _refused(
        world, "pull/ack", f"outbox seq {seq2}", body={"seqs": [seq2], "rows": [], "parks": []}
    )
    await _refused(world, "pull/outbox-keys", f"outbox seq {seq2}", body={"seqs": [seq2]})
    await _refused(
        world, "push/recover-rows", f"patients {p2}", body={"keys": [{"t": "patients", "id": p2}]}
    )
    await _refused(
        world,
        "pull/ack",
        f"patients {p2}",
        body={"seqs": [], "rows": [{"t": "patients", "id": p2, "revs": [1], "conflict": None}]},
    )


async def test_dead_letters_and_conflicts_of_site2_are_refused(
    world: World, seeded: dict[str, int]
) -> None:
    p1, p2, c2 = seeded["p1"], seeded["p2"], seeded["conflict2"]
    park = {"table_name": "patients", "row_id": p2, "revision": 1, "reason": "x"}
    await _refused(
        world,
        "pull/ack",
        f"patients {p2}",
        body={"seqs": [], "rows": [], "parks": [{**park, "initial_s": 1, "max_s": 1}]},
    )
    conflict = {
        "id": c2,  # site 2's open conflict, to be overwritten
        "table_name": "patients",
        "row_id": p1,
        "site_id": 1,
        "base_revision": 1,
        "detected_on": "local",
    }
    await _refused(
        world,
        "pull/ack",
        f"conflict {c2}",
        body={"seqs": [], "rows": [{"t": "patients", "id": p1, "revs": [], "conflict": conflict}]},
    )
    await _refused(
        world,
        "pull/ack",
        "not its own (site 2)",
        body={
            "seqs": [],
            "rows": [
                {
                    "t": "patients",
                    "id": p1,
                    "revs": [],
                    "conflict": {**conflict, "id": 1, "site_id": 2},
                }
            ],
        },
    )


async def test_site2_rows_never_show_through_site1s_pull(
    world: World, seeded: dict[str, int]
) -> None:
    status, _ = await _post(
        world, "pull/read", token=world.site1.token, body={"limit": 1000, "skip": []}
    )
    assert status == 200
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{world.api.url}/v1/sync/pull/read",
            json={"limit": 1000, "skip": []},
            headers={
                "Authorization": f"Bearer {world.site1.token}",
                "X-Scsync-Holder": "attacker/1",
            },
        ) as resp,
    ):
        lines = [json.loads(x) for x in (await resp.text()).splitlines()]
    assert lines[-1] == {"rows": len(lines) - 1}
    assert all(json.loads(r[7])["site_id"] == 1 for r in lines[:-1] if r[7])
    assert seeded["p2"] not in {r[3] for r in lines[:-1]}


async def test_the_token_is_the_site_and_only_a_site_token_will_do(world: World) -> None:
    status, body = await _post(world, "push/inbox", body={})
    assert status == 401 and body["error"] == "unauthorized"
    user = issue_token(
        JWT_SECRET, subject="user:admin", kind="user", role="admin", site_id=1, side="cloud"
    )
    status, body = await _post(world, "push/inbox", token=user, body={})
    assert status == 403 and "site token" in body["message"]
    forged = issue_token(
        "x" * 40, subject="site:2", kind="site", role="site", site_id=2, side="cloud"
    )
    status, body = await _post(world, "push/inbox", token=forged, body={})
    assert status == 401


async def test_the_source_position_is_the_calling_sites_own(world: World) -> None:
    """push/position answers the position the cloud holds for the token's site, never
    another's (whatever the body names), and only to a site token."""
    with world.cloud.connect(autocommit=True) as c:
        c.execute(
            "INSERT INTO scsync_replication_cursor (lane, site_id, source_lsn)"
            " VALUES ('push', 1, '0/1A0'), ('push', 2, '0/2B0')"
        )
    status, body = await _post(world, "push/position", token=world.site1.token, body={})
    assert status == 200 and body["source_lsn"] == "0/1A0" and body["site_id"] == 1
    status, body = await _post(world, "push/position", token=world.site2.token, body={"site_id": 1})
    assert status == 200 and body["source_lsn"] == "0/2B0" and body["site_id"] == 2
    user = issue_token(
        JWT_SECRET, subject="user:admin", kind="user", role="admin", site_id=1, side="cloud"
    )
    status, body = await _post(world, "push/position", token=user, body={})
    assert status == 403 and "site token" in body["message"]
    status, body = await _post(world, "push/position", body={})
    assert status == 401


async def test_a_batch_at_or_before_the_stored_position_is_skipped(world: World) -> None:
    """A WAL batch whose end LSN the cloud holds (a replay after a crash) is answered
    skipped and changes nothing; a later one is applied and moves the position, in the
    apply's transaction; a position that is no LSN is refused."""
    row = _row(
        1,
        "patients",
        9_001,
        {"id": 9_001, "site_id": 1, "name": "n", "patient_code": "W-1", "revision": 77},
    )
    status, body = await _post(
        world, "push/apply", token=world.site1.token, data=_batch([row], source_lsn="0/5000")
    )
    assert status == 200 and body["skipped"] is False and len(body["outcomes"]) == 1
    again = _row(
        1,
        "patients",
        9_001,
        {"id": 9_001, "site_id": 1, "name": "replayed", "patient_code": "W-1", "revision": 78},
        revision=78,
    )
    for lsn in ("0/5000", "0/4FFF"):
        status, body = await _post(
            world, "push/apply", token=world.site1.token, data=_batch([again], source_lsn=lsn)
        )
        assert status == 200 and body == {
            "batch_id": None,
            "outcomes": [],
            "failures": [],
            "skipped": True,
        }
    with world.cloud.connect() as c:
        assert c.execute("SELECT name, revision FROM patients WHERE id = 9001").fetchone() == (
            "n",
            77,
        )
        assert c.execute(
            "SELECT source_lsn::text FROM scsync_replication_cursor"
            " WHERE lane = 'push' AND site_id = 1"
        ).fetchone() == ("0/5000",)
    status, body = await _post(
        world, "push/apply", token=world.site1.token, data=_batch([again], source_lsn="0/5001")
    )
    assert status == 200 and body["skipped"] is False
    status, body = await _post(world, "push/position", token=world.site1.token, body={})
    assert body["source_lsn"] == "0/5001"
    status, body = await _post(
        world, "push/apply", token=world.site1.token, data=_batch([again], source_lsn="x; --")
    )
    assert status == 400 and "source_lsn" in body["message"]


async def test_a_lane_lease_has_one_holder_and_lapses_with_it(world: World) -> None:
    token = world.site1.token
    async with aiohttp.ClientSession() as http:

        async def lease(holder: str) -> tuple[int, Any]:
            async with http.post(
                f"{world.api.url}/v1/sync/pull/lease",
                json={},
                headers={"Authorization": f"Bearer {token}", "X-Scsync-Holder": holder},
            ) as resp:
                return resp.status, await resp.json()

        assert (await lease("host-a/1"))[0] == 200
        assert (await lease("host-a/1"))[0] == 200  # renewed by its holder
        status, body = await lease("host-b/1")
        assert status == 409 and body["error"] == "lane_busy"
        assert "host-a/1" in body["message"] and "lapses" in body["message"]
        with world.cloud.connect(autocommit=True) as c:  # its holder went silent long ago
            c.execute("UPDATE scsync_lane_leases SET expires_at = now() - interval '1 s'")
        assert (await lease("host-b/1"))[0] == 200


def test_registering_a_site_creates_no_database_role(cloud_db: TestDatabase) -> None:
    creds = cloud_db.call(register_site, "clinic-norole")
    with cloud_db.connect() as c:
        roles = c.execute(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE %s OR rolname = 'scsync_site'",
            (f"scsync_site{creds.site_id}%",),
        ).fetchall()
        assert roles == []
        policies = c.execute("SELECT count(*) FROM pg_policy").fetchone()
        assert policies == (0,)
