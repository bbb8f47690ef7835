"""The moto S3 endpoint: a real process answering real HTTP."""

from __future__ import annotations

import os
import socket
import urllib.request
from collections.abc import Iterator

import pytest
from botocore.exceptions import EndpointConnectionError

from scsync.s3_server import S3Endpoint


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Endpoint]:
    with S3Endpoint() as endpoint:
        yield endpoint


def test_bucket_and_object_roundtrip(s3: S3Endpoint) -> None:
    client = s3.client()
    client.create_bucket(Bucket="roundtrip")
    payload = os.urandom(256 * 1024) + b"\x00\xff" * 100
    key = "images/2024/ct scan #1.dcm"
    client.put_object(Bucket="roundtrip", Key=key, Body=payload)
    got = client.get_object(Bucket="roundtrip", Key=key)["Body"].read()
    assert got == payload
    listed = client.list_objects_v2(Bucket="roundtrip")
    assert [o["Key"] for o in listed.get("Contents", [])] == [key]


def test_presigned_put_with_urllib(s3: S3Endpoint) -> None:
    client = s3.client()
    client.create_bucket(Bucket="presigned")
    url = client.generate_presigned_url(
        "put_object", Params={"Bucket": "presigned", "Key": "up.bin"}, ExpiresIn=300
    )
    assert url.startswith(s3.url + "/presigned/up.bin?")
    # urllib labels a bytes body application/x-www-form-urlencoded unless told otherwise;
    # the bytes must still arrive intact, as they would on real S3.
    body = b"a=1&b=2" + os.urandom(1024)
    req = urllib.request.Request(url, data=body, method="PUT")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
    assert client.get_object(Bucket="presigned", Key="up.bin")["Body"].read() == body

    get_url = client.generate_presigned_url(
        "get_object", Params={"Bucket": "presigned", "Key": "up.bin"}, ExpiresIn=300
    )
    with urllib.request.urlopen(get_url, timeout=10) as resp:
        assert resp.read() == body


def test_request_log_counts_puts(s3: S3Endpoint) -> None:
    client = s3.client()
    client.create_bucket(Bucket="counted")
    s3.clear_request_log()
    for i in range(3):
        client.put_object(Bucket="counted", Key=f"k/{i}", Body=b"x")
    client.get_object(Bucket="counted", Key="k/0")
    log = s3.request_log()
    assert [p for m, p in log if m == "PUT"] == ["/counted/k/0", "/counted/k/1", "/counted/k/2"]
    assert ("GET", "/counted/k/0") in log


def test_request_log_multipart_query(s3: S3Endpoint) -> None:
    client = s3.client()
    client.create_bucket(Bucket="multi")
    s3.clear_request_log()
    upload = client.create_multipart_upload(Bucket="multi", Key="big")
    part = client.upload_part(
        Bucket="multi", Key="big", UploadId=upload["UploadId"], PartNumber=1, Body=b"p" * 10
    )
    client.complete_multipart_upload(
        Bucket="multi",
        Key="big",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
    )
    puts = [p for m, p in s3.request_log(include_query=True) if m == "PUT"]
    assert len(puts) == 1 and "partNumber=1" in puts[0]
    assert client.get_object(Bucket="multi", Key="big")["Body"].read() == b"p" * 10


def test_stop_kills_the_process() -> None:
    endpoint = S3Endpoint()
    endpoint.start()
    pid = endpoint.pid
    assert pid is not None
    client = endpoint.client()
    client.create_bucket(Bucket="gone")
    endpoint.stop()
    assert not os.path.exists(f"/proc/{pid}")
    assert not endpoint.is_running()
    assert ("PUT", "/gone") in endpoint.request_log()  # still readable after stop
    with pytest.raises(EndpointConnectionError):
        client.list_buckets()
    endpoint.stop()  # idempotent


def test_two_endpoints_are_independent(s3: S3Endpoint) -> None:
    with S3Endpoint() as other:
        assert other.port != s3.port
        other.client().create_bucket(Bucket="only-other")
        names = {b["Name"] for b in s3.client().list_buckets().get("Buckets", [])}
        assert "only-other" not in names


def test_auto_port_taken_before_start_is_replaced() -> None:
    endpoint = S3Endpoint()
    squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        squatter.bind(("127.0.0.1", endpoint.port))
        squatter.listen()
        taken = endpoint.port
        with endpoint:
            assert endpoint.port != taken
            endpoint.client().create_bucket(Bucket="moved")
    finally:
        squatter.close()
