"""Blob endpoints of the cloud API: presigned S3 URLs for sites, verification, on-demand.

An aiohttp sub-application. The cloud API mounts it with
``app.add_subapp("/v1/blobs", make_blobs_app(BlobSettings(...)))``; tests run it alone
on a loopback port. Sites hold no S3 credentials: this app signs short-lived URLs for
exactly one key, ``sites/<site_id>/blobs/<sha256>``, built here from the path's site id
(which must be the caller's) and a validated sha256, so no caller-supplied text ever
becomes part of a key.

After an upload the cloud proves size and sha256 of the object before it records the
blob as uploaded. Default (``verify_by="checksum"``): the URL of a single PUT is signed
with the blob's SHA256 as ``x-amz-checksum-sha256``, so S3 refuses any other bytes
(``BadDigest``) and a HEAD afterwards shows the checksum S3 checked; an object without
that checksum (a multipart upload, a store that keeps none) is read back through
hashlib in chunks, which is all ``verify_by="read"`` does. ``verify_by="copy"`` has S3
compute the SHA256 itself in an in-place copy. S3's ETag of a multipart object is not a
content hash, and a SHA256 a client sends with its parts is a checksum of part
checksums, so neither proves the bytes. Endpoints and JSON
bodies are listed in docs/files.md.

Modules, one job each: ``settings`` (BlobSettings), ``app`` (make_blobs_app: routes and
middlewares), ``resources`` (pool, S3 client, presigner), ``target`` (which blob a
request names, who may act on it), ``upload`` (plans and complete), ``verify`` (proving
the bytes), ``objects`` (state, download, delete), ``on_demand`` (requests for a blob
still only on the site); ``python -m api.blobs`` runs them alone.
"""

from api.blobs.app import make_blobs_app
from api.blobs.settings import BlobSettings
from api.blobs.target import blob_key

__all__ = ["BlobSettings", "blob_key", "make_blobs_app"]
