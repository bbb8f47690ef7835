"""``scsync demo``: a cloud and two clinics on this machine, as real processes, and a
narrated scenario that checks each step through the public interfaces (HTTP APIs,
WebSocket, the ``scsync`` CLI).

Processes: an embedded PostgreSQL for the cloud and one per site, a moto S3 server,
the cloud API, the blob endpoints and lockd where the cloud API does not mount them,
a lockd that the sites reach, and per site its local API and its replicator
(``scsync replicator run``, file lanes from the ``[files]`` table). Every one is stopped
on exit, on failure and on Ctrl-C.

One module per job:

- ``run``: the entry point (``run_demo``), serving until Ctrl-C, SIGTERM as Ctrl-C;
- ``world``: the world's description (``World``, ``SiteInfo``, ``DemoOptions``) and how it
  is built: services started, schema, sites registered, config files, sign-in hints;
- ``scenario``: the narrated, checked steps (backfill, sign-ins, edits, outage, sync off,
  status);
- ``client``: what a viewer does over HTTP and WebSocket (requests, probes, waiting,
  events, sign-in, records, edit sessions);
- ``narration``: steps, checks and the progress bar as printed;
- ``data``: the clinics' history (patients, doctors, accounts, PNG X-rays, a volume).

The child processes themselves are supervised by ``scsync.demo.processes``.
"""
