"""Password hashes for ``user_accounts`` (scrypt from the standard library).

Format: ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>``, so parameters can be raised
later without invalidating stored hashes. Shared by the API, the CLI and tests.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Final

N: Final = 2**14
R: Final = 8
P: Final = 1
DKLEN: Final = 32
# 1 MiB pages of passwords are not passwords; refuse before spending CPU on them.
MAX_PASSWORD_BYTES: Final = 1024


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def hash_password(password: str, *, n: int = N, r: int = R, p: int = P) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, dklen=DKLEN, maxmem=128 * n * r * p * 2
    )
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """True when `password` matches `stored`; False for any malformed hash."""
    encoded = password.encode()
    if len(encoded) > MAX_PASSWORD_BYTES:
        return False
    try:
        scheme, n_s, r_s, p_s, salt_b64, hash_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        n, r, p = int(n_s), int(r_s), int(p_s)
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(hash_b64)
        digest = hashlib.scrypt(
            encoded, salt=salt, n=n, r=r, p=p, dklen=len(expected), maxmem=128 * n * r * p * 2
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


# A hash of a random password: verifying against it when the user does not exist
# costs the same time as a real check, so timing does not reveal valid usernames.
DUMMY_HASH: Final = hash_password(secrets.token_urlsafe(16))


# scrypt costs ~50 ms of CPU and 16 MiB: never on the event loop (lockd, blobs and every
# WebSocket share it). One thread at a time, so a burst of sign-ins queues here while
# the loop keeps a core; hashlib.scrypt releases the GIL while it runs.
_HASHING = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scsync-scrypt")


async def hash_password_async(password: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(_HASHING, hash_password, password)


async def verify_password_async(password: str, stored: str) -> bool:
    return await asyncio.get_running_loop().run_in_executor(
        _HASHING, verify_password, password, stored
    )
