"""The cloud API's sync endpoints: the only way a site's replicator reaches the cloud.

``/v1/sync/{lane}/{op}``, POST, a site token (``Authorization: Bearer``): the site is
the token's, never the body's. Each request runs the lane steps of
:class:`schema.lanes.LaneDb` on the cloud database as the app's own role, in one
transaction that first sets the acting site (the wall of every lane function: a row,
seq, record, referenced record, conflict or dead letter of another site refuses the
whole request, 403 naming it, and nothing is applied) and takes or renews the lane's
lease for the ``X-Scsync-Holder`` of the request (409 ``lane_busy`` naming the live
holder). A lease lapses ``lease_ttl_s`` after its holder's last request: a replicator
whose link died silently holds nothing for long.

Batches stream as JSON lines both ways: ``push/apply`` COPYs the rows into the stage as
they arrive (the first line is a header), ``pull/read`` streams the rows of one
REPEATABLE READ snapshot and ends with a trailer ``{"rows": n}``.

Push lane (the cloud is the destination): schema, apply, forget, inbox, recover-rows.
Pull lane (the cloud is the source): schema, read, ack, outbox-keys, depth.
Both: lease, release. ``pull/wait``: a long poll that answers when a change of the
site is committed on the cloud (the outbox's NOTIFY, heard by this instance's own
LISTEN connection, or with the RabbitMQ bus by the relay leader's and fanned out to
every instance), or after ``timeout_s``; the replicator polls as a fallback. And
``/v1/sync/status``: the site's figures on the cloud (``scsync status``,
``scsync replicator status``), taking no lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Final

import psycopg
import psycopg_pool
from aiohttp import web

from api.errors import ApiError, BadRequest, Conflict, Forbidden, ServiceUnavailable
from api.jsonschema import HOLDER_PARAM
from schema import database
from schema.auth import Principal, TokenCache
from schema.columns import SIDE_ONLY_COLUMNS
from schema.errors import ScsyncError, first_line
from schema.lanes import (
    TRANSIENT_CODES,
    BatchRow,
    LaneDb,
    LaneName,
    Park,
    is_data_error,
)
from schema.notifications import Listener, wakes
from schema.revocation import DEFAULT_CHECK_S, Revocations
from schema.web import (
    PRINCIPAL,
    REVOCATIONS,
    TOKENS,
    Access,
    Handler,
    Route,
    add_routes,
    bearer_auth,
    error_middleware,
)

log = logging.getLogger("scsync.api.sync")

HOLDER_HEADER: Final = "X-Scsync-Holder"
HOLDER_RE: Final = re.compile(r"^[A-Za-z0-9._:/@+-]{1,200}$")
CONNECT_TIMEOUT_S: Final = 10
LISTENER_NAME: Final = "scsync-sync-listen"
LISTENER_PROBE_S: Final = 10.0
_CHUNK: Final = 1 << 16
# A WAL position as PostgreSQL writes it (pg_lsn's text form).
_LSN: Final = re.compile(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}")

Conn = database.Conn
Pool = database.Pool


@dataclass(frozen=True)
class SyncSettings:
    db_url: str  # the cloud database, as the cloud app's role
    jwt_secret: str
    lease_ttl_s: float = 30.0
    pool_size: int = 10
    db_timeout_s: float = 10.0
    # The longest a pull/wait long poll is held.
    wait_max_s: float = 30.0
    # Where the long polls' wake-ups come from: "listen", this instance's own LISTEN on
    # the cloud database; "bus", the RabbitMQ relay (api/events.py: one listener for
    # all instances), wired by the cloud API through sync_hints().
    outbox_hints: str = "listen"
    # How often the outbox is asked about the sites that wait when no hint came (the
    # hints carry no site: the code that commits sends them, the triggers do not).
    hint_poll_s: float = 1.0
    # A revoked site token is refused within this many seconds (schema/revocation.py).
    revocation_check_s: float = DEFAULT_CHECK_S


class ApplyFailedError(ApiError):
    """A batch the database refused for its data: the lane applies it record by record."""

    status = 422
    code = "apply_failed"


class LaneBusyError(Conflict):
    code = "lane_busy"


class BatchError(BadRequest):
    code = "bad_batch"


_SETTINGS: Final = web.AppKey("sync_settings", SyncSettings)
_POOL: Final = web.AppKey("sync_pool", Pool)


class Hints:
    """Per site: how many outbox hints this instance has heard, and who waits for one."""

    def __init__(self) -> None:
        self.instance = uuid.uuid4().hex[:12]
        self.count: dict[int, int] = {}
        self.events: dict[int, asyncio.Event] = {}
        # The newest outbox seq seen per site, and a wake-up without a site to check.
        self.heads: dict[int, int] = {}
        self.asked = asyncio.Event()
        # Whether hints reach this instance yet (its listener has connected once, or the
        # bus feeds it): a long poll held before then is answered at the connect.
        self.live = False

    def mark(self, site_id: int) -> str:
        return f"{self.instance}:{self.count.get(site_id, 0)}"

    def heard(self, site_id: int) -> None:
        self.count[site_id] = self.count.get(site_id, 0) + 1
        event = self.events.pop(site_id, None)
        if event is not None:
            event.set()

    def all(self) -> None:
        """The listener (re)connected: hints may have been missed; wake everyone once."""
        for site_id in list(self.events):
            self.heard(site_id)

    def hear(self, site_id: int | None) -> None:
        """A hint: one site's, or (None) a change of some site: the outbox is asked
        which of the sites that wait here have new rows (:func:`_check_outbox`)."""
        if site_id is None:
            self.asked.set()
        else:
            self.heard(site_id)

    def moved(self, heads: Iterable[tuple[int, int]]) -> None:
        """The outbox's newest seq of waiting sites: those that moved are woken."""
        for site_id, seq in heads:
            if seq > self.heads.get(site_id, 0):
                self.heads[site_id] = seq
                self.heard(site_id)

    def event(self, site_id: int) -> asyncio.Event:
        return self.events.setdefault(site_id, asyncio.Event())


_HINTS: Final = web.AppKey("sync_hints", Hints)

_SITE: Final = web.RequestKey("sync_site", int)


def make_sync_app(settings: SyncSettings, pool: Pool | None = None) -> web.Application:
    """The sync endpoints as an app of their own (mounted at /v1/sync by the cloud API,
    or served alone). ``pool``: an autocommit pool of the cloud database its owner opens
    and closes (the cloud API shares its lockd pool: one pool fewer per process);
    without it the app keeps one of its own."""
    app = web.Application(
        middlewares=[
            error_middleware(log, _database_error),
            bearer_auth(ROUTES, admit=_site_token_only),
            _holder,
        ]
    )
    app[_SETTINGS] = settings
    if pool is not None:
        app[_POOL] = pool
    app[TOKENS] = TokenCache(settings.jwt_secret, "cloud")
    app[REVOCATIONS] = Revocations(lambda: app[_POOL].connection(), settings.revocation_check_s)
    app[_HINTS] = Hints()
    app.cleanup_ctx.append(_pool_ctx)
    if settings.outbox_hints == "listen":
        app.cleanup_ctx.append(_background(_listen, "sync-outbox-listen"))
    app.cleanup_ctx.append(_background(_check_outbox, "sync-outbox-check"))
    app.on_shutdown.append(_answer_waits)
    add_routes(app, ROUTES)
    from api import sync_files  # it builds on this module's helpers (the names below)

    sync_files.add_routes(app)
    return app


async def _pool_ctx(app: web.Application) -> AsyncIterator[None]:
    if _POOL in app:  # shared: its owner opens and closes it
        yield
        return
    settings = app[_SETTINGS]
    pool = database.make_pool(
        settings.db_url,
        name="scsync-sync",
        max_size=settings.pool_size,
        timeout_s=settings.db_timeout_s,
        connect_timeout_s=CONNECT_TIMEOUT_S,
    )
    await pool.open()
    app[_POOL] = pool
    try:
        yield
    finally:
        await pool.close()


def sync_hints(app: web.Application) -> Hints:
    """The wake-ups of a sync app's long polls, for the bus to feed (``outbox_hints =
    "bus"``)."""
    return app[_HINTS]


async def _answer_waits(app: web.Application) -> None:
    """Shutting down: every long poll answers ``changed``. This instance's listener
    stops now, so a change committed from here on would go unheard by its waiters: the
    replicator reads at once and polls again (at another instance if this one is gone)
    rather than taking the cut-off poll for "nothing changed"."""
    app[_HINTS].all()


def _background(
    run: Callable[[web.Application], Coroutine[Any, Any, None]], name: str
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context running ``run(app)`` as a task for the app's lifetime."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(run(app), name=name)
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    return ctx


async def _check_outbox(app: web.Application) -> None:
    """After a hint without a site, and every ``hint_poll_s``: one query for the newest
    outbox seq of the sites whose long polls wait here; those that moved answer."""
    settings, hints = app[_SETTINGS], app[_HINTS]
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hints.asked.wait(), settings.hint_poll_s)
        hints.asked.clear()
        waiting = list(hints.events)
        if not waiting:
            continue
        try:
            async with app[_POOL].connection() as conn:
                cur = await conn.execute(database.named("sync_outbox_heads"), {"sites": waiting})
                hints.moved((int(r[0]), int(r[1])) for r in await cur.fetchall())
        except (psycopg.Error, psycopg_pool.PoolTimeout, OSError) as exc:
            log.warning("sync: outbox check: %s", first_line(exc))


async def _listen(app: web.Application) -> None:
    """The outbox hints of every site, on one connection of this instance (the API's,
    not a site's); reconnected with backoff (schema/notifications.py)."""
    settings, hints = app[_SETTINGS], app[_HINTS]
    listener = Listener(
        settings.db_url,
        ["scsync_outbox"],
        LISTENER_NAME,
        # The connection's liveness probe; the outbox itself is asked every
        # hint_poll_s by _check_outbox.
        tick_s=LISTENER_PROBE_S,
        connect_timeout_s=CONNECT_TIMEOUT_S,
    )
    async with contextlib.aclosing(wakes(listener)) as heard:
        async for w in heard:
            if w.fresh:
                hints.all()
                hints.live = True
            for note in w.notes:
                hints.hear(int(note.payload) if note.payload.isdigit() else None)


# -- errors and authentication ------------------------------------------------------------


def _unavailable(message: str) -> ScsyncError:
    return ServiceUnavailable(f"the cloud database: {message}")


# Driver errors of a request: the wall (403; its message names the row, seq or record
# that is not the site's), the database unreachable or a transient refusal (503: the
# replicator retries), a value the batch carries that a column refuses (400).
ERRORS: Final = database.Translation(
    {
        "42501": lambda e: Forbidden(e.message),
        **{code: (lambda e: _unavailable(e.message)) for code in TRANSIENT_CODES},
    },
    unavailable=_unavailable,
    other=lambda e: BatchError(e.message),
)


def _database_error(request: web.Request, exc: Exception) -> ScsyncError | None:
    out = ERRORS.maybe(exc)
    if isinstance(out, Forbidden):
        log.warning("sync: refused for %s: %s", request.get(_SITE), out)
    return out if isinstance(out, ScsyncError) else None


def _site_token_only(request: web.Request, principal: Principal) -> None:
    if not principal.is_site or principal.site_id is None:
        raise Forbidden("the sync endpoints take a site token (POST /v1/sites/{id}/token)")


@web.middleware
async def _holder(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request names its lane lease holder; the acting site is the token's."""
    holder = request.headers.get(HOLDER_HEADER, "")
    if not HOLDER_RE.fullmatch(holder):
        raise BadRequest(
            f"header {HOLDER_HEADER} must name the lane's holder "
            "(1-200 letters, digits and ._:/@+-)",
            field=HOLDER_HEADER,
        )
    site_id = request[PRINCIPAL].site_id
    assert site_id is not None  # _site_token_only
    request[_SITE] = site_id
    return await handler(request)


def _lane(request: web.Request) -> LaneName:
    return "push" if request.path.rstrip("/").split("/")[-2] == "push" else "pull"


# -- the transaction of a request -----------------------------------------------------------


def _prelude(request: web.Request, lane: LaneName | None) -> Callable[[Conn], Awaitable[None]]:
    """What starts every transaction of this request, in one round trip: the acting
    site, the site enabled, the lane's lease (none for ``lane=None``)."""
    site_id: int = request[_SITE]
    holder = request.headers[HOLDER_HEADER]
    ttl = request.app[_SETTINGS].lease_ttl_s

    async def start(conn: Conn) -> None:
        cur = await conn.execute(
            database.named("sync_begin"),
            {"site_id": site_id, "lane": lane, "holder": holder, "ttl_s": ttl},
        )
        row = await cur.fetchone()
        assert row is not None
        enabled, other, until, left = row
        if not enabled:
            raise Forbidden(f"site {site_id} is not registered or is disabled")
        if other is not None:
            raise LaneBusyError(
                f"the {lane} lane of site {site_id} is leased to replicator {other} for "
                f"{max(0.0, float(left or 0)):.0f} s more (until {until}); the lease lapses "
                f"{ttl:.0f} s after its holder's last request, so a replicator that "
                "stopped or lost its link there gives it up on its own"
            )

    return start


async def _with_db(
    request: web.Request, lane: LaneName, work: Callable[[LaneDb], Awaitable[Any]]
) -> Any:
    async with request.app[_POOL].connection() as conn:
        return await work(LaneDb(conn, request[_SITE], "cloud", _prelude(request, lane)))


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest("body must be JSON") from exc
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


def _ints(body: dict[str, Any], key: str) -> list[int]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise BadRequest(f"{key} must be a list of integers", field=key)
    return [int(v) for v in value]


def _keys(body: dict[str, Any], key: str) -> str:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(
        isinstance(k, dict) and isinstance(k.get("t"), str) and isinstance(k.get("id"), int)
        for k in value
    ):
        raise BadRequest(f'{key} must be a list of {{"t": table, "id": row id}}', field=key)
    return json.dumps(value)


# -- both lanes ---------------------------------------------------------------------------


async def _lease(request: web.Request) -> web.Response:
    lane = _lane(request)

    async def take(db: LaneDb) -> None:
        async with db.conn.transaction():
            await _prelude(request, lane)(db.conn)

    await _with_db(request, lane, take)
    ttl = request.app[_SETTINGS].lease_ttl_s
    return web.json_response({"lane": lane, "site_id": request[_SITE], "ttl_s": ttl})


async def _release(request: web.Request) -> web.Response:
    lane = _lane(request)
    async with request.app[_POOL].connection() as conn:
        await conn.execute(
            database.named("sync_lease_release"),
            {"site_id": request[_SITE], "lane": lane, "holder": request.headers[HOLDER_HEADER]},
        )
    return web.json_response({"lane": lane, "released": True})


async def _schema(request: web.Request) -> web.Response:
    columns, revision = await _with_db(request, _lane(request), lambda db: db.columns())
    return web.json_response({"columns": columns, "revision": revision})


# -- push: the cloud is the destination -----------------------------------------------------


async def _lines(request: web.Request) -> AsyncIterator[Any]:
    buf = bytearray()
    async for chunk in request.content.iter_chunked(_CHUNK):
        buf.extend(chunk)
        start = 0
        while (end := buf.find(b"\n", start)) >= 0:
            line = bytes(buf[start:end]).strip()
            start = end + 1
            if line:
                yield _json_line(line)
        del buf[:start]
    if bytes(buf).strip():
        yield _json_line(bytes(buf))


def _json_line(line: bytes) -> Any:
    try:
        return json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BatchError(f"a line of the batch is not JSON: {exc}") from exc


async def _apply(request: web.Request) -> web.Response:
    """The batch's header line, then its rows, COPYed into the stage as they arrive."""
    lines = _lines(request)
    head = await anext(lines, None)
    if not isinstance(head, dict):
        raise BatchError("the first line must be the batch header (a JSON object)")
    mode = head.get("mode")
    if mode not in ("batch", "each"):
        raise BatchError("mode must be 'batch' or 'each'", field="mode")
    columns = head.get("columns")
    if not isinstance(columns, dict) or not all(
        isinstance(t, str) and isinstance(c, list) and all(isinstance(x, str) for x in c)
        for t, c in columns.items()
    ):
        raise BatchError("columns must map tables to lists of column names", field="columns")
    forget = _ints(head, "forget")
    commit_at = head.get("source_commit_at")
    peer_revision = head.get("peer_schema_revision")
    try:
        source_commit_at = None if commit_at is None else dt.datetime.fromisoformat(commit_at)
    except (TypeError, ValueError) as exc:
        raise BatchError("source_commit_at must be an ISO timestamp") from exc
    expected = head.get("rows")
    source_lsn = head.get("source_lsn")
    if source_lsn is not None and (
        not isinstance(source_lsn, str) or not _LSN.fullmatch(source_lsn)
    ):
        raise BatchError(
            "source_lsn must be a WAL position such as '0/16B3748'", field="source_lsn"
        )

    async def rows() -> AsyncIterator[BatchRow]:
        n = 0
        async for value in lines:
            try:
                yield BatchRow.from_json(value)
            except ValueError as exc:
                raise BatchError(f"row {n + 1} of the batch: {exc}") from exc
            n += 1
        if n != expected:
            raise BatchError(f"the batch announced {expected} rows and held {n}")

    async def work(db: LaneDb) -> Any:
        # Never this side's own bookkeeping (lifecycle, blob_state, ...), whatever the
        # client lists; a column the cloud lacks fails the batch (422, then record by
        # record: parked until the cloud has it), as a plain apply would.
        allowed = {
            t: [c for c in cols if c not in SIDE_ONLY_COLUMNS] for t, cols in columns.items()
        }
        return await db.apply(
            "push",
            rows(),
            allowed,
            forget,
            source_commit_at,
            None if peer_revision is None else str(peer_revision),
            mode == "each",
            source_lsn,
        )

    try:
        applied = await _with_db(request, "push", work)
    except psycopg.Error as exc:
        if mode == "batch" and is_data_error(exc):
            raise ApplyFailedError(first_line(exc)) from exc
        raise
    return web.json_response(
        {
            "batch_id": applied.batch_id,
            "outcomes": applied.outcomes,
            "failures": [[t, i, why] for (t, i), why in applied.failures.items()],
            "skipped": applied.skipped,
        }
    )


async def _position(request: web.Request) -> web.Response:
    """The calling site's source position on the cloud: where its WAL stream resumes."""
    lsn = await _with_db(request, "push", lambda db: db.source_lsn("push"))
    return web.json_response({"lane": "push", "site_id": request[_SITE], "source_lsn": lsn})


async def _forget(request: web.Request) -> web.Response:
    ids = _ints(await _body(request), "batch_ids")
    await _with_db(request, "push", lambda db: db.forget("push", ids))
    return web.json_response({"forgotten": len(ids)})


async def _inbox(request: web.Request) -> web.Response:
    pending = await _with_db(request, "push", lambda db: db.inbox_pending("push"))
    return web.json_response({"pending": pending})


async def _recover_rows(request: web.Request) -> web.Response:
    keys = _keys(await _body(request), "keys")
    text = await _with_db(request, "push", lambda db: db.recover_rows(keys))
    return web.json_response(text=f'{{"rows": {text}}}')


# -- pull: the cloud is the source ----------------------------------------------------------


async def _read(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    limit = body.get("limit")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 < limit <= 100_000:
        raise BadRequest("limit must be an integer from 1 to 100000", field="limit")
    exclude = body.get("exclude", {})
    if not isinstance(exclude, dict) or not all(
        isinstance(c, list) and all(isinstance(x, str) for x in c) for c in exclude.values()
    ):
        raise BadRequest("exclude must map tables to lists of column names", field="exclude")
    skip = _ints(body, "skip")
    response: web.StreamResponse | None = None
    n = 0
    async with request.app[_POOL].connection() as conn:
        db = LaneDb(conn, request[_SITE], "cloud", _prelude(request, "pull"))
        rows = db.read_iter("pull", limit, exclude, skip)
        try:
            # The first row (or the end) before the answer starts: an error up to then
            # (the wall, the lease) is still a proper status.
            first = await anext(rows, None)
            response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
            await response.prepare(request)
            lines: list[bytes] = []
            row = first
            while row is not None:
                lines.append(json.dumps(row.to_json()).encode())
                n += 1
                if len(lines) >= 200:
                    await response.write(b"\n".join(lines) + b"\n")
                    lines = []
                row = await anext(rows, None)
            lines.append(json.dumps({"rows": n}).encode())
            await response.write(b"\n".join(lines) + b"\n")
        finally:
            await rows.aclose()
    assert response is not None
    await response.write_eof()
    return response


async def _ack(request: web.Request) -> web.Response:
    body = await _body(request)
    seqs = _ints(body, "seqs")
    rows = body.get("rows", [])
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise BadRequest("rows must be a list of objects", field="rows")
    raw_parks = body.get("parks", [])
    if not isinstance(raw_parks, list):
        raise BadRequest("parks must be a list", field="parks")
    try:
        parks = [
            Park(
                table_name=str(p["table_name"]),
                row_id=int(p["row_id"]),
                revision=int(p["revision"]),
                reason=str(p["reason"])[:2000],
                initial_s=float(p["initial_s"]),
                max_s=float(p["max_s"]),
            )
            for p in raw_parks
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise BadRequest(f"a park entry is malformed: {exc}", field="parks") from exc
    rows_text = json.dumps(rows)
    await _with_db(request, "pull", lambda db: db.ack("pull", seqs, rows_text, parks))
    return web.json_response({"acknowledged": len(seqs), "parked": len(parks)})


async def _outbox_keys(request: web.Request) -> web.Response:
    seqs = _ints(await _body(request), "seqs")
    keys = await _with_db(request, "pull", lambda db: db.outbox_keys(seqs))
    return web.json_response({"keys": keys})


async def _depth(request: web.Request) -> web.Response:
    depth, lag = await _with_db(request, "pull", lambda db: db.outbox_depth())
    return web.json_response({"depth": depth, "oldest_change_age_s": lag})


async def _status(request: web.Request) -> web.Response:
    site = {"site_id": request[_SITE]}

    async def fetch(conn: Conn, name: str) -> list[tuple[Any, ...]]:
        cur = await conn.execute(database.named(name), site)
        return await cur.fetchall()

    async with request.app[_POOL].connection() as conn, conn.transaction():
        await _prelude(request, None)(conn)
        ((depth, age),) = await fetch(conn, "replicator_outbox_depth")
        ((conflicts,),) = await fetch(conn, "replicator_conflicts_open")
        cursors = await fetch(conn, "replicator_cursors")
        parked = await fetch(conn, "replicator_dead_letters")
        ((live, by_local, by_cloud),) = await fetch(conn, "ops_leases_live")

    def iso(value: Any) -> str | None:
        return None if value is None else value.isoformat()

    return web.json_response(
        {
            "site_id": request[_SITE],
            "outbox_depth": int(depth),
            "oldest_change_age_s": None if age is None else float(age),
            "conflicts_open": int(conflicts),
            "cursors": [
                {
                    "lane": c[0],
                    "last_applied_at": iso(c[3]),
                    "last_source_commit_at": iso(c[4]),
                    "rows_applied": int(c[5] or 0),
                    "peer_schema_revision": c[6],
                }
                for c in cursors
            ],
            "parked": [
                {
                    "lane": p[0],
                    "table": p[1],
                    "row_id": p[2],
                    "revision": p[3],
                    "reason": p[4],
                    "attempts": p[5],
                    "next_retry_at": iso(p[7]),
                }
                for p in parked
            ],
            "leases": {"live": int(live), "by_local": int(by_local), "by_cloud": int(by_cloud)},
        }
    )


async def _wait(request: web.Request) -> web.Response:
    """Long poll: ``changed`` as soon as a change of this site is committed on the cloud
    after ``mark`` (the mark of the previous answer), else after ``timeout_s``."""
    body = await _body(request)
    timeout = body.get("timeout_s", 25.0)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout < 0:
        raise BadRequest("timeout_s must be a non-negative number", field="timeout_s")
    mark = body.get("mark")
    hints, site = request.app[_HINTS], request[_SITE]
    now = hints.mark(site)
    instance, _, seen = str(mark or "").partition(":")
    # Hints heard since the caller's last answer (same instance only: another instance
    # counts its own, and a missed hint costs one poll interval, never a busy loop).
    if instance == hints.instance and seen.isdigit() and int(seen) < hints.count.get(site, 0):
        return web.json_response({"changed": True, "mark": now})
    if site not in hints.heads:
        # The outbox as it is now is what the caller has read (it waits only after
        # draining): the checks wake it for rows beyond this, not for these.
        async with request.app[_POOL].connection() as conn:
            cur = await conn.execute(database.named("sync_outbox_heads"), {"sites": [site]})
            hints.heads[site] = max((int(r[1]) for r in await cur.fetchall()), default=0)
    event = hints.event(site)
    try:
        await asyncio.wait_for(event.wait(), min(float(timeout), request.app[_SETTINGS].wait_max_s))
        changed = True
    except TimeoutError:
        changed = False
    return web.json_response({"changed": changed, "mark": hints.mark(site)})


# For the site endpoints of other modules on this app (api/sync_files.py): the same
# pool, acting site and transaction prelude.
POOL: Final = _POOL
SITE: Final = _SITE
prelude: Final = _prelude
json_body: Final = _body


def site_route(
    path: str,
    handler: Handler,
    op_id: str,
    summary: str,
    response: Any = None,
    request: Any = None,
    **kw: Any,
) -> Route:
    """A sync endpoint: POST, the site's token, the lane holder parameter (this app's
    and api/sync_files.py's)."""
    return Route(
        "post",
        f"/{path}",
        handler,
        op_id,
        summary + " (site token)",
        response,
        request=request,
        params=(HOLDER_PARAM, *kw.pop("params", ())),
        access=Access.SITE,
        tags=("sync",),
        **kw,
    )


def _route(path: str, handler: Handler, op_id: str, summary: str) -> Route:
    return site_route(
        path,
        handler,
        op_id,
        summary,
        None if path == "pull/read" else {"type": "object"},
        {"type": "object"},
        content_type="application/x-ndjson" if path == "pull/read" else "application/json",
    )


# A site token only; the site is the token's. push/apply takes JSON lines (a header,
# then rows) and pull/read answers JSON lines; every lane request names its lease holder
# in X-Scsync-Holder. The file-area endpoints of this app: api/sync_files.py.
ROUTES: Final = (
    _route("push/lease", _lease, "sync_push_lease", "Take or renew the push lane's lease"),
    _route("push/release", _release, "sync_push_release", "Give the push lane's lease back"),
    _route(
        "push/schema",
        _schema,
        "sync_push_schema",
        "The cloud's synced columns and schema revision",
    ),
    _route(
        "push/apply",
        _apply,
        "sync_push_apply",
        "Apply a batch of the site's changes (JSON lines)",
    ),
    _route(
        "push/position",
        _position,
        "sync_push_position",
        "The site's source position (WAL LSN) the cloud holds",
    ),
    _route("push/forget", _forget, "sync_push_forget", "Forget acknowledged inbox entries"),
    _route("push/inbox", _inbox, "sync_push_inbox", "Batches applied but not yet acknowledged"),
    _route(
        "push/recover-rows",
        _recover_rows,
        "sync_push_recover_rows",
        "What the cloud holds of some records",
    ),
    _route("pull/lease", _lease, "sync_pull_lease", "Take or renew the pull lane's lease"),
    _route("pull/release", _release, "sync_pull_release", "Give the pull lane's lease back"),
    _route(
        "pull/schema",
        _schema,
        "sync_pull_schema",
        "The cloud's synced columns and schema revision",
    ),
    _route(
        "pull/read",
        _read,
        "sync_pull_read",
        "The next batch of the site's cloud changes (JSON lines)",
    ),
    _route("pull/ack", _ack, "sync_pull_ack", "Acknowledge a pulled batch, park what failed"),
    _route(
        "pull/outbox-keys",
        _outbox_keys,
        "sync_pull_outbox_keys",
        "The records of some outbox seqs",
    ),
    _route("pull/depth", _depth, "sync_pull_depth", "The site's cloud outbox depth and lag"),
    _route(
        "pull/wait",
        _wait,
        "sync_pull_wait",
        "Long poll: answered when a change of the site commits",
    ),
    _route("status", _status, "sync_site_status", "The site's sync figures on the cloud"),
)
