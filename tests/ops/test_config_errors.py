"""Every config error path of every service's start-up, as the operator sees it: one
line naming the file or the key and the problem, exit code 2, nothing started."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

SECRET = "ops-config-tests-secret-0123456789abcdef"
GOOD_PG = "postgresql://scsync@127.0.0.1:1/scsync"
SITE_KEYS: dict[str, object] = {
    "local_db_url": GOOD_PG,
    "cloud_api_url": "https://127.0.0.1:1",
    "site_token": "t",
    "site_id": 1,
}

# Each service: the command line with {config}, and a valid set of its keys.
SERVICES: dict[str, tuple[list[str], str, dict[str, object]]] = {
    "replicator": (
        ["replicator", "run", "--config", "{config}"],
        "replicator",
        SITE_KEYS,
    ),
    "files": (
        [
            "files",
            "run",
            "--config",
            "{config}",
            "--blobs-url",
            "http://127.0.0.1:1/v1/blobs",
            "--token",
            "t",
            "--store",
            "/tmp/none",
        ],
        "replicator",
        SITE_KEYS,
    ),
    "api-local": (
        ["api", "run", "--side", "local", "--config", "{config}"],
        "api",
        {"db_url": GOOD_PG, "jwt_secret": SECRET},
    ),
    "api-cloud": (
        ["api", "run", "--side", "cloud", "--config", "{config}"],
        "api",
        {"db_url": GOOD_PG, "jwt_secret": SECRET},
    ),
}
# Per service: the key to drop, a URL key to break, an integer key to mistype.
KEYS = {
    "replicator": ("cloud_api_url", "local_db_url", "site_id"),
    "files": ("site_token", "local_db_url", "site_id"),
    "api-local": ("db_url", "db_url", "port"),
    "api-cloud": ("jwt_secret", "db_url", "pool_max"),
}


def _toml(values: dict[str, object]) -> str:
    import json

    return "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())


def _argv(service: str, config: Path) -> list[str]:
    return [a.replace("{config}", str(config)) for a in SERVICES[service][0]]


def _write(tmp_path: Path, service: str, values: dict[str, object], sectioned: bool) -> Path:
    section = SERVICES[service][1]
    body = _toml(values)
    if sectioned:  # the layout `scsync init` writes: one table per service
        body = f"[{section}]\n{body}\n[lockd]\nttl_s = 30\n"
    path = tmp_path / f"{service}.toml"
    path.write_text(body, encoding="utf-8")
    return path


@pytest.mark.parametrize("sectioned", [False, True], ids=["flat", "sections"])
@pytest.mark.parametrize("service", sorted(SERVICES))
def test_missing_key_is_named(
    run: Callable[[list[str]], tuple[int, str]], tmp_path: Path, service: str, sectioned: bool
) -> None:
    key = KEYS[service][0]
    values = {k: v for k, v in SERVICES[service][2].items() if k != key}
    code, msg = run(_argv(service, _write(tmp_path, service, values, sectioned)))
    assert code == 2
    assert key in msg and "required" in msg, msg
    assert len(msg.splitlines()) == 1


@pytest.mark.parametrize(
    "bad", ["http://127.0.0.1/db", "mysql://root@127.0.0.1/db", "postgresql://h:99x/db", "nope"]
)
@pytest.mark.parametrize("service", sorted(SERVICES))
def test_bad_url_is_named(
    run: Callable[[list[str]], tuple[int, str]], tmp_path: Path, service: str, bad: str
) -> None:
    key = KEYS[service][1]
    values = {**SERVICES[service][2], key: bad}
    code, msg = run(_argv(service, _write(tmp_path, service, values, True)))
    assert code == 2
    assert key in msg and ("URL" in msg or "url" in msg), msg


def test_url_password_is_not_echoed(
    run: Callable[[list[str]], tuple[int, str]], tmp_path: Path
) -> None:
    values = {**SERVICES["replicator"][2], "local_db_url": "mysql://site:hunter2secret@h/db"}
    code, msg = run(_argv("replicator", _write(tmp_path, "replicator", values, False)))
    assert code == 2 and "local_db_url" in msg
    assert "hunter2secret" not in msg


@pytest.mark.parametrize("service", ["replicator", "files"])
def test_a_leftover_cloud_db_url_names_its_replacement(
    run: Callable[[list[str]], tuple[int, str]], tmp_path: Path, service: str
) -> None:
    values = {**SERVICES[service][2], "cloud_db_url": "postgresql://site:hunter2secret@h/db"}
    code, msg = run(_argv(service, _write(tmp_path, service, values, True)))
    assert code == 2, msg
    assert "cloud_db_url is no longer used" in msg and "cloud_api_url" in msg, msg
    assert "hunter2secret" not in msg and len(msg.splitlines()) == 1


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_wrong_type_is_named(
    run: Callable[[list[str]], tuple[int, str]], tmp_path: Path, service: str
) -> None:
    key = KEYS[service][2]
    values = {**SERVICES[service][2], key: "twelve"}
    code, msg = run(_argv(service, _write(tmp_path, service, values, True)))
    assert code == 2
    assert key in msg and "integer" in msg, msg


@pytest.mark.parametrize("service", sorted(SERVICES))
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", "does not exist"),
        ("directory", "cannot be read: it is a directory"),
        ("binary", "is not UTF-8 text"),
        ("not-toml", "is not valid TOML"),
        ("section-not-table", "must be a table"),
    ],
)
def test_unreadable_file_is_named(
    run: Callable[[list[str]], tuple[int, str]],
    tmp_path: Path,
    service: str,
    case: str,
    expected: str,
) -> None:
    path = tmp_path / "scsync.toml"
    if case == "directory":
        path.mkdir()
    elif case == "binary":
        path.write_bytes(b"\xff\xfe\x00site_id = 1\n")
    elif case == "not-toml":
        path.write_text("site_id = \n", encoding="utf-8")
    elif case == "section-not-table":
        path.write_text(f'{SERVICES[service][1]} = "x"\n', encoding="utf-8")
    code, msg = run(_argv(service, path))
    assert code == 2
    assert str(path) in msg and expected in msg, msg


def test_environment_overrides_the_file_and_is_named_when_wrong(
    run: Callable[[list[str]], tuple[int, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, "api-local", SERVICES["api-local"][2], True)
    monkeypatch.setenv("SCSYNC_API_PORT", "eighty")
    code, msg = run(_argv("api-local", path))
    assert code == 2 and "SCSYNC_API_PORT" in msg and "integer" in msg, msg
    monkeypatch.delenv("SCSYNC_API_PORT")
    rpath = _write(tmp_path, "replicator", SERVICES["replicator"][2], True)
    monkeypatch.setenv("SCSYNC_SITE_ID", "-3")
    code, msg = run(_argv("replicator", rpath))
    assert code == 2 and "site_id" in msg and "greater than 0" in msg, msg


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["lockd", "run"], {"SCSYNC_JWT_SECRET": SECRET}, "no cloud database URL"),
        (["lockd", "run", "--db-url", GOOD_PG], {}, "SCSYNC_JWT_SECRET"),
        (["lockd", "run", "--db-url", GOOD_PG], {"SCSYNC_JWT_SECRET": "short"}, "32 bytes"),
        (["lockd", "run", "--db-url", "http://h/x"], {"SCSYNC_JWT_SECRET": SECRET}, "'db_url'"),
        (["lockd", "run", "--port", "x"], {}, "invalid int value"),
    ],
)
def test_lockd_settings_errors(
    run: Callable[[list[str]], tuple[int, str]],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    env: dict[str, str],
    expected: str,
) -> None:
    monkeypatch.delenv("SCSYNC_JWT_SECRET", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    code, msg = run(argv)
    assert code == 2
    assert expected in msg, msg


FILE_VARS = ("SCSYNC_BLOBS_URL", "SCSYNC_SITE_TOKEN", "SCSYNC_FILE_STORE")


@pytest.mark.parametrize("command", ["replicator", "files"])
@pytest.mark.parametrize(
    ("files_table", "expected"),
    [
        ('blobs_url = "ftp://cloud/v1/blobs"\ntoken = "t"\nstore = "/tmp/s"\n', "'blobs_url'"),
        ('blobs_url = "http://cloud/v1/blobs"\ntoken = 7\nstore = "/tmp/s"\n', "'token'"),
        ('blobs_url = "http://cloud/v1/blobs"\ntoken = "t"\n', "--store"),
    ],
)
def test_files_table_errors_are_named(
    run: Callable[[list[str]], tuple[int, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    files_table: str,
    expected: str,
) -> None:
    for var in FILE_VARS:
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "local.toml"
    path.write_text(
        "[replicator]\n" + _toml(SERVICES["replicator"][2]) + "\n[files]\n" + files_table,
        encoding="utf-8",
    )
    code, msg = run([command, "run", "--config", str(path)])
    assert code == 2
    assert expected in msg, msg
    assert len(msg.splitlines()) == 1


@pytest.mark.parametrize("command", ["replicator", "files"])
@pytest.mark.parametrize(
    ("files_table", "env", "flags", "missing"),
    [
        # The token defaults to the site's own (site_token of [replicator]).
        ('blobs_url = "http://cloud/v1/blobs"\n', {}, [], ["store"]),
        ('token = "t"\n', {}, [], ["blobs_url", "store"]),
        ("", {}, ["--store", "/tmp/s", "--token", "t"], ["blobs_url"]),
        ('token = "t"\n', {"SCSYNC_FILE_STORE": "/tmp/s"}, [], ["blobs_url"]),
        ("", {}, ["--concurrency", "8"], ["blobs_url", "store"]),
    ],
    ids=["file-url-only", "files-token-only", "flags-without-url", "file-and-env", "tuning-only"],
)
def test_partial_file_settings_name_what_is_missing(
    run: Callable[[list[str]], tuple[int, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    files_table: str,
    env: dict[str, str],
    flags: list[str],
    missing: list[str],
) -> None:
    """Some of blobs_url, token and store (from any source): neither command starts."""
    for var in FILE_VARS:
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    path = tmp_path / "local.toml"
    body = "[replicator]\n" + _toml(SERVICES["replicator"][2])
    if files_table:
        body += "\n[files]\n" + files_table
    path.write_text(body, encoding="utf-8")
    code, msg = run([command, "run", "--config", str(path), *flags])
    assert code == 2
    assert len(msg.splitlines()) == 1, msg
    assert msg.startswith("scsync: error: incomplete file settings"), msg
    named = msg.split("missing", 1)[1]
    for key in ("blobs_url", "token", "store"):
        assert (f"{key} (--" in named) == (key in missing), msg


def test_files_run_requires_the_file_settings(
    run: Callable[[list[str]], tuple[int, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in FILE_VARS:
        monkeypatch.delenv(var, raising=False)
    path = _write(tmp_path, "replicator", SERVICES["replicator"][2], True)
    code, msg = run(["files", "run", "--config", str(path)])
    assert code == 2
    assert "missing blobs_url (--blobs-url, SCSYNC_BLOBS_URL" in msg, msg
    # The token is the site's own (site_token of [replicator]): not missing.
    assert "token (--token" not in msg and "store (--store" in msg, msg


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('ttl_s = "long"\n', "'ttl_s' of [lockd] must be a number"),
        ('port = "8470"\n', "'port' of [lockd] must be an integer"),
        ("host = 1\n", "'host' of [lockd] must be a string"),
        ('db_url = "http://cloud/x"\n', "'db_url' must be a postgresql:// URL"),
        ('jwt_secret = "short"\ndb_url = "postgresql://h/x"\n', "at least 32 bytes"),
        ("ttl_s = -1\n", "ttl"),
    ],
)
def test_lockd_config_table_errors_are_named(
    run: Callable[[list[str]], tuple[int, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    table: str,
    expected: str,
) -> None:
    monkeypatch.delenv("SCSYNC_JWT_SECRET", raising=False)
    path = tmp_path / "cloud.toml"
    api = "" if "jwt_secret" in table else f'[api]\njwt_secret = "{SECRET}"\n'
    path.write_text(f"{api}[lockd]\n{table}", encoding="utf-8")
    if "db_url" not in table:
        monkeypatch.setenv("SCSYNC_CLOUD_DB_URL", GOOD_PG)
    code, msg = run(["lockd", "run", "--config", str(path)])
    assert code == 2
    assert expected in msg, msg
