"""Presigned S3 URLs, signed by botocore's SigV4 query signer without the client around it.

``S3Client.generate_presigned_url`` serializes the operation's whole model, resolves the
endpoint through its rule set and runs the client's event hooks on every call: 350-550
µs of the blob API's CPU per URL (two URLs per uploaded file), where the signing itself
is a tenth of that. The blob API only ever signs five request shapes (PUT, a part PUT,
GET, HEAD, each on one key, path-style), so it builds the request here and lets
:class:`botocore.auth.S3SigV4QueryAuth` sign it: the same signature code, the same URL
(tests/files/test_presign.py compares the two at one instant for every shape).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote

from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest

if TYPE_CHECKING:
    from botocore.credentials import Credentials

__all__ = ["Presigner"]


class Presigner:
    """Signs URLs for one bucket at one endpoint (path-style, like the API's client)."""

    def __init__(
        self, credentials: Credentials, endpoint_url: str | None, region: str, bucket: str
    ) -> None:
        self._credentials = credentials
        self._region = region
        base = (endpoint_url or f"https://s3.{region}.amazonaws.com").rstrip("/")
        self._bucket_url = f"{base}/{quote(bucket, safe='')}"

    def url(
        self,
        method: str,
        key: str,
        expires_in: int,
        *,
        query: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """A URL for ``method`` on ``key`` valid ``expires_in`` seconds; ``headers`` are
        signed into it (the request must send them), ``query`` rides along signed."""
        request = AWSRequest(
            method=method,
            url=f"{self._bucket_url}/{quote(key, safe='/~')}",
            headers=dict(headers or {}),
            params={k: str(v) for k, v in (query or {}).items()},
        )
        # Frozen per URL: refreshable credentials (an instance role) rotate underneath.
        frozen = self._credentials.get_frozen_credentials()
        S3SigV4QueryAuth(frozen, "s3", self._region, expires=expires_in).add_auth(request)
        return str(request.url)
