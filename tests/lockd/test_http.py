"""lockd over HTTP, served by a real `scsync lockd run` process: the site client, JWT
scoping, and bad input answered with clear 4xx JSON that changes no lease state."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import jwt
import pytest

from lockd.client import LockClient
from lockd.errors import (
    Forbidden,
    LeaseBusy,
    LeaseNotHeld,
    LockServiceUnreachable,
    RecordNotFound,
    VersionConflict,
)
from schema.auth import issue_token, site_token
from tests.lockd.conftest import add_patient, row_of
from tests.lockd.procs import SECRET, LockdProcess, lockd_process
from tests.pg import PgCluster, TestDatabase

pytestmark = pytest.mark.dblevel


@pytest.fixture(scope="module")
def module_cloud(pg_cluster: PgCluster) -> Iterator[TestDatabase]:
    tdb = pg_cluster.new_database("cloud", node_id=0, site_id=None)
    try:
        yield tdb
    finally:
        pg_cluster.remove(tdb)


@pytest.fixture(scope="module")
def server(module_cloud: TestDatabase) -> Iterator[LockdProcess]:
    with lockd_process(module_cloud.url, "--ttl-s", "2", "--idle-warn-s", "0") as proc:
        yield proc


@pytest.fixture
def rid(module_cloud: TestDatabase) -> int:
    return add_patient(module_cloud, 1, "H1", "Http patient")


@pytest.fixture
def other_site_rid(module_cloud: TestDatabase) -> int:
    return add_patient(module_cloud, 2, "H2", "Other site patient")


@pytest.fixture
async def site1(server: LockdProcess) -> AsyncIterator[LockClient]:
    async with LockClient(server.url, site_token(SECRET, 1), timeout_s=3) as client:
        yield client


def _state(db: TestDatabase) -> tuple[list[Any], int]:
    with db.connect() as conn:
        leases = conn.execute(
            "SELECT table_name, row_id, lease_id, token, expires_at, last_activity_at,"
            " saves FROM scsync_leases ORDER BY 1, 2"
        ).fetchall()
        row = conn.execute("SELECT count(*) FROM scsync_lease_events").fetchone()
    assert row is not None
    return leases, int(str(row[0]))


async def test_site_client_edit_cycle(
    site1: LockClient, server: LockdProcess, module_cloud: TestDatabase, rid: int
) -> None:
    lease = await site1.acquire("patients", rid, "local:1/alice")
    assert lease.holder == "local:1/alice" and lease.ttl_ms == 2000
    state = await site1.get("patients", rid)
    assert state.status == "held" and state.editing_by == "local"
    async with LockClient(
        server.url,
        issue_token(
            SECRET, side="cloud", subject="user:bob", kind="user", role="editor", site_id=1
        ),
    ) as bob:
        with pytest.raises(LeaseBusy) as busy:
            await bob.acquire("patients", rid, "ignored")
        assert busy.value.extra["holder"] == "local:1/alice"
        # A cloud user cannot act on the site's lease even with its id and token.
        with pytest.raises(LeaseNotHeld):
            await bob.release(lease.lease_id, lease.token)
    saved = await site1.save(
        lease.lease_id, lease.token, {"notes": "via http"}, expected_revision=lease.revision
    )
    assert saved.version == "2.0"
    with pytest.raises(VersionConflict):
        await site1.save(
            lease.lease_id, lease.token, {"notes": "again"}, expected_revision=lease.revision
        )
    renewed = await site1.renew(lease.lease_id, lease.token)
    assert renewed.saves == 1 and renewed.saved_revision == saved.revision
    await site1.release(lease.lease_id, lease.token)
    assert (await site1.get("patients", rid)).status == "free"
    assert row_of(module_cloud, rid)["notes"] == "via http"


async def test_site_scope_and_unknown_records(
    site1: LockClient, other_site_rid: int, module_cloud: TestDatabase
) -> None:
    before = _state(module_cloud)
    with pytest.raises(Forbidden):
        await site1.acquire("patients", other_site_rid, "local:1/alice")
    with pytest.raises(Forbidden) as err:
        await site1.acquire("patients", other_site_rid, "local:2/alice")
    assert err.value.field == "holder"
    with pytest.raises(RecordNotFound):
        await site1.acquire("patients", 999, "local:1/alice")
    with pytest.raises(RecordNotFound):
        await site1.acquire("no_table", 1, "local:1/alice")
    assert _state(module_cloud) == before


async def _raw(
    server: LockdProcess,
    path: str,
    *,
    data: bytes | None = None,
    token: str | None = None,
    method: str = "POST",
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, server.url + path, data=data, headers=headers) as resp,
    ):
        body = await resp.json(content_type=None)
        assert resp.content_type == "application/json"
        return resp.status, body


async def test_bad_http_input_gets_clear_errors_and_changes_nothing(
    server: LockdProcess, module_cloud: TestDatabase, rid: int, other_site_rid: int
) -> None:
    good = site_token(SECRET, 1)
    # One live lease, so that "nothing changed" covers an existing lease too.
    async with LockClient(server.url, good) as client:
        lease = await client.acquire("patients", rid, "local:1/alice", ttl_s=30)
    before = _state(module_cloud)
    forged = jwt.encode(
        {
            "sub": "site:1",
            "kind": "site",
            "role": "site",
            "site": 1,
            "iss": "scsync",
            "iat": 0,
            "exp": 2**40,
        },
        "another-secret-0123456789abcdef-0123456789",
        algorithm="HS256",
    )
    expired = issue_token(
        SECRET,
        side="cloud",
        subject="site:1",
        kind="site",
        role="site",
        site_id=1,
        ttl_s=1,
        now=1000,
    )
    acquire = b'{"table": "patients", "row_id": %d, "holder": "local:1/x"}' % rid
    cases: list[tuple[str, bytes | None, str | None, int, str, str | None]] = [
        ("/acquire", acquire, None, 401, "unauthorized", None),
        ("/acquire", acquire, forged, 401, "unauthorized", None),
        ("/acquire", acquire, expired, 401, "unauthorized", None),
        ("/acquire", acquire, "not.a.jwt", 401, "unauthorized", None),
        ("/acquire", b"{not json", good, 400, "bad_request", None),
        ("/acquire", b"[1, 2]", good, 400, "bad_request", None),
        ("/acquire", b'{"row_id": 1, "holder": "local:1/x"}', good, 400, "bad_request", "table"),
        (
            "/acquire",
            b'{"table": "patients", "row_id": "abc", "holder": "local:1/x"}',
            good,
            400,
            "bad_request",
            "row_id",
        ),
        (
            "/acquire",
            b'{"table": "patients", "row_id": %d, "holder": 7}' % rid,
            good,
            400,
            "bad_request",
            "holder",
        ),
        (
            "/acquire",
            b'{"table": "patients", "row_id": %d, "holder": "local:1/x", "ttl_ms": -5}' % rid,
            good,
            400,
            "bad_request",
            "ttl_ms",
        ),
        (
            "/acquire",
            b'{"table": "patients", "row_id": 42, "holder": "local:1/x"}',
            good,
            404,
            "record_not_found",
            None,
        ),
        (
            "/acquire",
            b'{"table": "patients", "row_id": %d, "holder": "local:1/x"}' % other_site_rid,
            good,
            403,
            "forbidden",
            None,
        ),
        ("/renew", b'{"lease_id": "nope", "token": 1}', good, 400, "bad_request", "lease_id"),
        (
            "/renew",
            b'{"lease_id": "%s"}' % str(lease.lease_id).encode(),
            good,
            400,
            "bad_request",
            "token",
        ),
        (
            "/release",
            b'{"lease_id": "%s", "token": %d}' % (str(uuid.uuid4()).encode(), lease.token),
            good,
            409,
            "lease_not_held",
            None,
        ),
        (
            "/save",
            b'{"lease_id": "%s", "token": %d, "changes": {"revision": 5}}'
            % (str(lease.lease_id).encode(), lease.token),
            good,
            400,
            "invalid_change",
            "changes.revision",
        ),
        (
            "/save",
            b'{"lease_id": "%s", "token": %d, "changes": []}'
            % (str(lease.lease_id).encode(), lease.token),
            good,
            400,
            "bad_request",
            "changes",
        ),
        (
            "/break",
            b'{"table": "patients", "row_id": %d}' % rid,
            issue_token(
                SECRET, side="cloud", subject="user:v", kind="user", role="viewer", site_id=1
            ),
            403,
            "forbidden",
            None,
        ),
        ("/acquire", b'{"pad": "' + b"x" * 200_000 + b'"}', good, 413, "payload_too_large", None),
    ]
    for path, data, token, status, code, field in cases:
        got_status, body = await _raw(server, path, data=data, token=token)
        assert (got_status, body.get("error"), body.get("field")) == (status, code, field), (
            path,
            data[:80] if data else None,
            body,
        )
        assert isinstance(body.get("message"), str) and body["message"]
    status, body = await _raw(server, "/leases/patients/abc", token=good, method="GET")
    assert (status, body["field"]) == (400, "row_id")
    assert _state(module_cloud) == before


async def test_unreachable_service_raises_the_specific_error() -> None:
    # Nothing listens on this port: connection refused.
    from scsync.embedded_pg import free_port

    async with LockClient(f"http://127.0.0.1:{free_port()}/v1/locks", "t", timeout_s=0.5) as c:
        with pytest.raises(LockServiceUnreachable):
            await c.acquire("patients", 1, "local:1/a")

    # A peer that accepts and never answers: the short timeout decides.
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    srv = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        async with LockClient(f"http://127.0.0.1:{port}/v1/locks", "t", timeout_s=0.3) as c:
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(LockServiceUnreachable):
                await c.acquire("patients", 1, "local:1/a")
            assert loop.time() - started < 5
    finally:
        srv.close()


async def test_a_body_arriving_in_pieces_is_read_whole(
    server: LockdProcess, module_cloud: TestDatabase, rid: int
) -> None:
    body = b'{"table": "patients", "row_id": %d, "holder": "local:1/slow"}' % rid

    async def trickle(data: bytes, pieces: int) -> AsyncIterator[bytes]:
        step = max(1, len(data) // pieces)
        for i in range(0, len(data), step):
            yield data[i : i + step]
            await asyncio.sleep(0.02)

    headers = {"Authorization": f"Bearer {site_token(SECRET, 1)}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(server.url + "/acquire", data=trickle(body, 4)) as resp:
            lease = await resp.json()
            assert resp.status == 200, lease
        async with http.post(server.url + "/release", json=lease) as resp:
            assert resp.status == 200
        before = _state(module_cloud)
        huge = b'{"pad": "' + b"y" * 100_000 + b'"}'
        async with http.post(server.url + "/acquire", data=trickle(huge, 20)) as resp:
            assert resp.status == 413
            assert (await resp.json())["error"] == "payload_too_large"
    assert _state(module_cloud) == before
