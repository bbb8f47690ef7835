"""Sub-commands of `scsync`, one module each; every module has ``register(subparsers)``.

Add a module here to add a command group.
"""

from __future__ import annotations

from types import ModuleType

from scsync.commands import api, db, demo, examples, files, init, lockd, replicator, status

COMMANDS: tuple[ModuleType, ...] = (init, db, lockd, api, files, replicator, status, demo, examples)
