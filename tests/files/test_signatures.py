"""A presigned URL for site 1 cannot be turned into one for site 2 (SPEC: Security,
presigned URLs prefix-scoped). moto accepts tampered URLs, so the signatures are
checked here with botocore's own SigV4 code, as a store that checks them would: the
signature of the request as it would be sent is computed again with the blob API's
credentials and compared with the one in the URL."""

from __future__ import annotations

import hmac
import os
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import aiohttp
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from scsync.s3_server import ACCESS_KEY, SECRET_KEY
from tests.files.conftest import BlobServer
from tests.files.helpers import MiB, sha256_of


def signature_matches(
    url: str, method: str, headers: dict[str, str] | None = None, secret_key: str = SECRET_KEY
) -> bool:
    """Does the X-Amz-Signature of `url` sign this request (S3's SignatureDoesNotMatch
    check for query-signed requests)? Expiry is not checked here."""
    u = urlsplit(url)
    pairs = parse_qsl(u.query, keep_blank_values=True)
    q = dict(pairs)
    given = q["X-Amz-Signature"]
    access_key, _date, region, service, _ = q["X-Amz-Credential"].split("/")
    signed = q["X-Amz-SignedHeaders"].split(";")
    sent = {k: v for k, v in (headers or {}).items() if k.lower() in signed}
    if sorted({"host", *(k.lower() for k in sent)}) != sorted(signed):
        return False  # a signed header is missing from the request (or the reverse)
    rest = urlencode([(k, v) for k, v in pairs if k != "X-Amz-Signature"], quote_via=quote)
    request = AWSRequest(
        method=method, url=urlunsplit((u.scheme, u.netloc, u.path, rest, "")), headers=sent
    )
    request.context["timestamp"] = q["X-Amz-Date"]
    auth = S3SigV4QueryAuth(
        Credentials(access_key, secret_key), service, region, expires=int(q["X-Amz-Expires"])
    )
    canonical = auth.canonical_request(request)
    expected = auth.signature(auth.string_to_sign(request, canonical), request)
    return hmac.compare_digest(expected, given)


def _tampered(url: str) -> dict[str, str]:
    """Every way to point a site 1 URL at site 2's key (or another key of site 1)."""
    u = urlsplit(url)
    assert "/sites/1/blobs/" in u.path
    other = u.path.replace("/sites/1/", "/sites/2/")
    return {
        "site 2": urlunsplit(u._replace(path=other)),
        "site 2, encoded slash": urlunsplit(
            u._replace(path=u.path.replace("/sites/1/", "/sites%2F2/"))
        ),
        "dot segments": urlunsplit(u._replace(path=u.path.replace("/sites/1/", "/sites/1/../2/"))),
        "other blob": urlunsplit(u._replace(path=u.path[:-64] + "0" * 64)),
        "other prefix": urlunsplit(u._replace(path=u.path.replace("/sites/1/blobs/", "/sites/1/"))),
    }


async def _post(s: aiohttp.ClientSession, url: str, token: str, body: dict[str, Any]) -> Any:
    async with s.post(url, json=body, headers={"Authorization": f"Bearer {token}"}) as r:
        return r.status, await r.json()


def test_the_verifier_is_botocores_own_signature() -> None:
    """The check can fail: a wrong secret key or another method does not verify."""
    import boto3
    from botocore.config import Config

    client = boto3.session.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name="us-east-1"
    ).client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
    )
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": "b", "Key": "sites/1/blobs/" + "a" * 64}, ExpiresIn=60
    )
    assert signature_matches(url, "GET")
    assert not signature_matches(url, "GET", secret_key="another-secret")
    assert not signature_matches(url, "PUT")
    for name, bad in _tampered(url).items():
        assert not signature_matches(bad, "GET"), name


async def test_presigned_urls_of_site_1_do_not_sign_site_2s_keys(blobs: BlobServer) -> None:
    data = os.urandom(100_000)
    sha = sha256_of(data)
    base = f"{blobs.base_url}/sites/1/blobs/{sha}"
    site1 = blobs.token(1)
    urls: list[tuple[str, str, dict[str, str]]] = []
    async with aiohttp.ClientSession() as s:
        status, plan = await _post(
            s, base + "/upload", site1, {"size": len(data), "sends_headers": True}
        )
        assert status == 200 and plan["status"] == "single", plan
        urls.append(("PUT", plan["url"], plan["headers"]))
        async with s.put(plan["url"], data=data, headers=plan["headers"]) as r:
            assert r.status == 200
        status, done = await _post(s, base + "/complete", site1, {"size": len(data)})
        assert status == 200 and done["status"] == "uploaded", done
        status, down = await _post(s, base + "/download", site1, {})
        assert status == 200
        urls.append(("GET", down["url"], {}))
        big = sha256_of(b"big" + os.urandom(8))
        status, multi = await _post(
            s, f"{blobs.base_url}/sites/1/blobs/{big}/upload", site1, {"size": 7 * MiB}
        )
        assert status == 200 and multi["status"] == "multipart", multi
        urls += [("PUT", p["url"], {}) for p in multi["parts"]]
    assert len(urls) >= 4
    for method, url, headers in urls:
        # (a) as issued, the URL verifies (with the headers the plan says to send) ...
        assert signature_matches(url, method, headers), url
        # ... and only for its method and its signed headers;
        assert not signature_matches(url, "DELETE", headers)
        if headers:
            assert not signature_matches(url, method, {})
        # (b) any edit of the path (another site, another blob) breaks the signature.
        for name, bad in _tampered(url).items():
            assert not signature_matches(bad, method, headers), (name, bad)
        # Nor can the query be edited (another upload id, a longer life).
        u = urlsplit(url)
        longer = u.query.replace(
            f"X-Amz-Expires={blobs.settings.url_ttl_s}", "X-Amz-Expires=604800"
        )
        assert longer != u.query
        assert not signature_matches(urlunsplit(u._replace(query=longer)), method, headers)


async def test_the_blob_api_signs_no_other_sites_key(blobs: BlobServer) -> None:
    sha = "ab" * 32
    async with aiohttp.ClientSession() as s:
        for token in (blobs.token(1), blobs.user_token(1, "editor")):
            for action in ("upload", "download", "complete"):
                url = f"{blobs.base_url}/sites/2/blobs/{sha}/{action}"
                status, body = await _post(s, url, token, {"size": 10})
                assert status == 403, (action, body)
                assert "url" not in body and "parts" not in body
        # Tricks in the path never reach a key: the site id and the sha are checked.
        for path in (
            f"/sites/1/blobs/..%2F..%2F2%2Fblobs%2F{sha}/upload",
            f"/sites/1/blobs/{sha[:-1]}/upload",
            f"/sites/01%2F..%2F2/blobs/{sha}/upload",
            f"/sites/2%20/blobs/{sha}/upload",
        ):
            status, body = await _post(s, blobs.base_url + path, blobs.token(1), {"size": 10})
            assert status in (400, 403, 404), (path, status, body)
            assert "sites/2" not in str(body.get("url", "")) and "parts" not in body
