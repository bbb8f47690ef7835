"""The commented configuration file of one side, as ``scsync init`` writes it.

Built from the services' settings classes themselves (``api.settings.Settings``,
``replicator.settings.Settings``), so a setting added there shows up here; the
comments below explain each one to an operator, and a test fails when one is missing.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from typing import Any, Final

from schema.config import PLACEHOLDER_SECRET as PLACEHOLDER_SECRET  # deploy/config's secret
from schema.config import PLACEHOLDER_TOKEN

# The services refuse to start on a placeholder (schema.config.PLACEHOLDERS): the site's
# token and its database password are known only once the site is registered.
LOCAL_DB: Final = "postgresql://scsync@127.0.0.1:5432/scsync"
CLOUD_DB_ADMIN: Final = "postgresql://scsync@cloud-db.example.net:5432/scsync_cloud"
CLOUD_API: Final = "https://cloud.example.net"

HELP: Final[dict[str, str]] = {
    # api
    "db_url": "this side's database (SCSYNC_LOCAL_DB_URL / SCSYNC_CLOUD_DB_URL work too)",
    "jwt_secret": "HS256 secret of the tokens this side issues (>= 32 bytes), its own: a "
    "clinic's local API and the cloud never share one (the cloud's is also lockd's and the "
    "blob endpoints'); keep this file mode 0600",
    "metrics_token": "bearer token Prometheus sends to GET /metrics (>= 32 characters; "
    "its scrape config's authorization credentials); unset: /metrics is off",
    "host": "address to listen on",
    "port": "TCP port",
    "token_ttl_s": "lifetime of a user's token (seconds)",
    "revocation_check_s": "a revoked token (account deleted or disabled, site disabled) is "
    "refused within this many seconds, at most 30",
    "client_max_size": "largest request body accepted (bytes); larger gets 413",
    "pool_min": "database connections kept open",
    "pool_max": (
        "database connections at most: the process's one pool (the cloud's mounted sync,"
        " lockd and blob endpoints share it)"
    ),
    "ws_queue_size": "events queued per WebSocket client before it is disconnected as slow",
    "ws_replay_limit": "events replayed to a reconnecting client (last_event_id) at most",
    "ws_heartbeat_s": "WebSocket ping period (seconds)",
    "ws_max_subscriptions": "subscriptions (sites + patients + records) one WebSocket may "
    "hold; more gets an error message",
    "login_max_failures": "failed sign-ins per account within login_window_s, then 429 "
    "with Retry-After",
    "login_max_failures_per_address": "failed sign-ins per client address within "
    "login_window_s, then 429 with Retry-After",
    "login_window_s": "the sign-in throttle's window (seconds)",
    "bus": "where live events come from: postgres (LISTEN/NOTIFY) or rabbitmq (cloud only)",
    "amqp_url": "RabbitMQ URL when bus = rabbitmq",
    "amqp_exchange": "RabbitMQ fanout exchange when bus = rabbitmq",
    "lockd_url": "local: the cloud's lock service (…/v1/locks of the cloud API)",
    "lockd_token": "local: this site's token, issued by the cloud (POST /v1/sites/<id>/token); "
    "the local API talks to the cloud (lockd, lease events) with it only",
    "lockd_timeout_s": "local: after this long without an answer lockd counts as unreachable "
    "and clients are offered an offline edit",
    "cloud_url": "local: the cloud API's base URL (live lease events of this site)",
    "mount_lockd": "cloud: serve lockd at /v1/locks",
    "lease_ttl_s": "cloud: lease TTL; a client that stops renewing loses its lease after this",
    "idle_warn_s": "cloud: warn an editor idle this long (0 = no idle policy)",
    "idle_close_s": "cloud: then close its lease this long after the warning",
    "mount_blobs": "cloud: serve the blob endpoints at /v1/blobs (needs s3_bucket)",
    "s3_bucket": "cloud: the bucket of every site's files (sites/<site_id>/blobs/<sha256>)",
    "s3_endpoint_url": "cloud: S3 endpoint; empty = AWS itself",
    "s3_region": "cloud: S3 region",
    "s3_access_key": "cloud: S3 credentials (empty = the usual AWS credential chain)",
    "s3_secret_key": "cloud: S3 credentials",
    "s3_verify_by": "cloud: how an upload's bytes are proven: checksum, read or copy"
    " (docs/files.md)",
    "blob_max_size": "cloud: the largest blob an upload plan is made for (bytes); larger gets 400",
    "lane_lease_ttl_s": "cloud: a site's replication lane is leased to its replicator for "
    "this long after its last request to /v1/sync",
    # replicator
    "local_db_url": "the site's local database",
    "cloud_api_url": "the cloud API (https://...): the site reaches the cloud only through "
    "its sync endpoints (the replicator; scsync backfill, sync, restore and policy set too)",
    "site_token": "this site's token (POST /v1/sites/<id>/token; scsync site register says how)",
    "ca_file": "CA bundle for the cloud API's certificate (empty: the system's)",
    "lane_holder": "who holds this site's lane leases on the cloud (empty: host/database)",
    "site_id": "this site's id (scsync site register)",
    "lanes": "which lanes run: push (local -> cloud), pull (cloud -> local)",
    "batch_size": "rows per replicated batch at most",
    "poll_interval_s": "poll the outboxes this often even without a hint (NOTIFY locally, "
    "the cloud API's long poll for the pull lane)",
    "capture": "where the site's own changes come from: wal (the replicator reads the "
    "WAL; needs wal_level = logical, see docs/operations.md) or triggers (written in "
    "the writer's transaction, for a server without logical WAL)",
    "outbox_probe_s": "look at the site's outbox this often for unannounced changes",
    "op_timeout_s": "one database or cloud API operation may take this long before it is retried",
    "connect_timeout_s": "database and cloud API connect timeout",
    "backoff_initial_s": "first retry delay after a failure (doubles, with jitter)",
    "backoff_max_s": "longest retry delay",
    "stop_grace_s": "on SIGTERM, let the current batch finish for this long",
    "dead_letter_initial_s": "first retry of a parked (poisoned) row",
    "dead_letter_max_s": "longest retry delay of a parked row",
    "schema_refresh_s": "re-read the peer's schema revision this often",
    "metrics_interval_s": "refresh lag/outbox/conflict figures this often",
    "log_level": "DEBUG, INFO, WARNING or ERROR",
    "metrics_port": "serve Prometheus /metrics on this port (0 = off)",
    "metrics_host": "address of the /metrics server",
}

# `scsync replicator run`: its file lanes run when all three are given (here, in the
# environment or as flags); none of them = row lanes only, some of them = an error.
FILES: Final[list[tuple[str, Any, str]]] = [
    ("blobs_url", f"{CLOUD_API}/v1/blobs", "the cloud's blob endpoints (SCSYNC_BLOBS_URL)"),
    ("token", PLACEHOLDER_TOKEN, "this site's token (SCSYNC_SITE_TOKEN)"),
    ("store", "/var/lib/scsync/files", "where downloaded files land (SCSYNC_FILE_STORE)"),
]

# `scsync lockd run --config` (lockd alone; the cloud API mounts it otherwise): [lockd].
LOCKD: Final[list[tuple[str, Any, str]]] = [
    ("db_url", CLOUD_DB_ADMIN, "the cloud database (default: db_url of [api])"),
    (
        "jwt_secret",
        "",
        "the cloud's secret (lockd is part of the cloud); default: jwt_secret "
        "of [api]; SCSYNC_JWT_SECRET wins",
    ),
    ("host", "127.0.0.1", "address to listen on (--host)"),
    ("port", 8470, "TCP port (--port)"),
    ("ttl_s", 30.0, "lease TTL (--ttl-s)"),
    ("idle_warn_s", 600.0, "warn an idle editor after this long; 0 = no idle policy"),
    ("idle_close_s", 300.0, "then close its lease this long after the warning"),
    ("sweep_interval_s", 1.0, "how often expired leases are swept"),
    ("revocation_check_s", 10.0, "a revoked token is refused within this long, at most 30"),
]


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple | list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return json.dumps(v)


def _lines(items: Iterable[tuple[str, Any, str, bool]]) -> list[str]:
    out: list[str] = []
    for key, value, help_text, active in items:
        out.append(f"# {help_text}")
        out.append(("" if active else "# ") + f"{key} = {_value(value)}")
    return out


def api_items(side: str, secret: str) -> list[tuple[str, Any, str, bool]]:
    from api.settings import Settings

    required = {
        "db_url": LOCAL_DB if side == "local" else CLOUD_DB_ADMIN,
        "jwt_secret": secret,
    }
    if side == "local":
        required.update(lockd_url=f"{CLOUD_API}/v1/locks", lockd_token=PLACEHOLDER_TOKEN)
        required["cloud_url"] = CLOUD_API
        required["port"] = 8080  # type: ignore[assignment]
    else:
        required.update(s3_bucket="scsync-files")
        required["port"] = 8443  # type: ignore[assignment]
    items = []
    for name, f in Settings.model_fields.items():
        if name == "side":
            continue
        active = name in required
        items.append((name, required.get(name, f.default), HELP.get(name, name), active))
    return items


def replicator_items() -> list[tuple[str, Any, str, bool]]:
    from pydantic_core import PydanticUndefined

    from replicator.settings import Settings

    required = {
        "local_db_url": LOCAL_DB,
        "cloud_api_url": CLOUD_API,
        "site_token": PLACEHOLDER_TOKEN,
        "site_id": 1,
    }
    items = []
    for name, f in Settings.model_fields.items():
        default = f.default if f.default is not PydanticUndefined else required.get(name)
        active = name in required
        items.append((name, required.get(name, default), HELP.get(name, name), active))
    return items


def render(side: str, secret: str | None = None) -> str:
    """The whole file for `side` ('local' or 'cloud')."""
    secret = secret or secrets.token_urlsafe(48)
    head = [
        f"# scsync configuration, {side} side — written by `scsync init --side {side}`.",
        "# One table per service; each reads only its own. Lines starting with '# key ='",
        "# show the default. Every key can also come from the environment, which wins:",
        "#   [api]        SCSYNC_API_<KEY>      (e.g. SCSYNC_API_PORT=8081)",
        "#   [replicator] SCSYNC_<KEY>          (e.g. SCSYNC_SITE_ID=3)",
        "# The services check every value at start and name the key of any problem.",
        "# This file holds secrets: chmod 600, owned by the service user.",
        "",
    ]
    if side == "local":
        head += [
            "# Run: scsync api run --side local --config THIS_FILE",
            "#      scsync replicator run --config THIS_FILE  (row lanes + file lanes of [files])",
            "#      scsync status --config THIS_FILE",
        ]
    else:
        head += [
            "# Run: scsync api run --side cloud --config THIS_FILE  (lockd and blobs mounted)",
        ]
    body = ["", "[api]", *_lines(api_items(side, secret))]
    if side == "local":
        body += ["", "[replicator]", *_lines(replicator_items())]
        body += [
            "",
            "[files]",
            "# optional: all three turn the replicator's file lanes on; without any, it syncs",
            "# rows only. Uncomment them once the site has its token (scsync site register).",
            *_lines((k, v, h, False) for k, v, h in FILES),
        ]
    else:
        body += [
            "",
            "# lockd run alone (`scsync lockd run --config THIS_FILE`); the cloud API mounts",
            "# lockd itself with lease_ttl_s / idle_* of [api]. Flags win over this table.",
            "[lockd]",
            *_lines((k, v, h, False) for k, v, h in LOCKD),
        ]
    return "\n".join(head + body) + "\n"
