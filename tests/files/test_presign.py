"""api.presign signs exactly what boto3's generate_presigned_url signs: the same URL (query
order aside) at one instant, for every request shape the blob API presigns."""

from __future__ import annotations

import datetime
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.config import Config

from api.presign import Presigner

KEY = "sites/7/blobs/" + "ab" * 32
SHA_B64 = "q" * 43 + "="
NOW = datetime.datetime(2026, 11, 27, 3, 4, 5)

SHAPES = [
    ("put_object", {"ChecksumSHA256": SHA_B64}, "PUT", {}, {"x-amz-checksum-sha256": SHA_B64}),
    ("put_object", {}, "PUT", {}, {}),
    ("upload_part", {"UploadId": "up-1", "PartNumber": 3}, "PUT",
     {"partNumber": 3, "uploadId": "up-1"}, {}),
    ("head_object", {"ChecksumMode": "ENABLED"}, "HEAD", {}, {"x-amz-checksum-mode": "ENABLED"}),
    ("get_object", {}, "GET", {}, {}),
]  # fmt: skip


def _parts(url: str) -> tuple[str, str, str, dict[str, list[str]]]:
    u = urlsplit(url)
    return u.scheme, u.netloc, u.path, parse_qs(u.query, keep_blank_values=True)


@pytest.mark.parametrize("endpoint,region", [("http://127.0.0.1:9000", "us-east-1"),
                                             (None, "eu-central-1")])  # fmt: skip
@pytest.mark.parametrize("operation,params,method,query,headers", SHAPES)
def test_same_url_as_boto3(
    monkeypatch: pytest.MonkeyPatch,
    endpoint: str | None,
    region: str,
    operation: str,
    params: dict[str, object],
    method: str,
    query: dict[str, str | int],
    headers: dict[str, str],
) -> None:
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda *a, **k: NOW)
    session = boto3.session.Session(
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret", region_name=region
    )
    client = session.client(
        "s3",
        endpoint_url=endpoint,
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
    )
    credentials = session.get_credentials()
    assert credentials is not None
    expected = client.generate_presigned_url(
        operation, Params={"Bucket": "bench-files", "Key": KEY, **params}, ExpiresIn=600
    )
    ours = Presigner(credentials, endpoint, region, "bench-files").url(
        method, KEY, 600, query=query, headers=headers
    )
    assert _parts(ours) == _parts(expected)
    assert "X-Amz-Signature" in parse_qs(urlsplit(ours).query)
