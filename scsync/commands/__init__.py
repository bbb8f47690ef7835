"""Sub-commands of `scsync`, one module each; every module has ``register(subparsers)``.

Add a module here to add a command group.
"""

from __future__ import annotations

from types import ModuleType

from scsync.commands import api, db, demo, files, lockd, replicator

COMMANDS: tuple[ModuleType, ...] = (db, lockd, api, files, replicator, demo)
