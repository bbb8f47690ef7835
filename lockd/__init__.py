"""lockd: edit leases on the cloud DB with fencing tokens, edit sessions with A.B
versions, an aiohttp sub-application and the sites' client. See docs/lockd.md.

Modules: ``manager`` (every lease operation), ``sessions``, ``local`` (fenced local
saves), ``offline``, ``records``, ``web``, ``client``, ``models``, ``errors``, ``db``.
"""
