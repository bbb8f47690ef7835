"""File lanes of the replicator: blob transfer through presigned S3 URLs, the site's
scope policy, newest-first backfill and on-demand requests. docs/files.md lists what
the replicator core calls."""
