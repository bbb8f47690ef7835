"""`scsync demo`: a cloud and two clinics on this machine, and a narrated, checked scenario."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _demo(args: argparse.Namespace) -> int:
    from scsync.demo.run import run_demo
    from scsync.demo.world import DemoOptions

    volume_mb = args.volume_mb if args.volume_mb is not None else (8 if args.once else 40)
    return run_demo(
        DemoOptions(
            once=args.once,
            workdir=Path(args.workdir) if args.workdir else None,
            keep=args.keep,
            patients=args.patients,
            images=args.images if args.images is not None else (8 if args.once else 18),
            volume_mb=volume_mb,
        )
    )


def register(sub: Any) -> None:
    demo = sub.add_parser(
        "demo",
        help="start a cloud and two clinics locally and run a narrated, checked scenario",
        epilog="examples:\n"
        "  scsync demo            # keeps serving the status pages until Ctrl-C\n"
        "  scsync demo --once     # exit 0 when every check passed, 1 otherwise",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--once", action="store_true", help="exit after the checks")
    demo.add_argument("--workdir", help="keep databases, files and logs here")
    demo.add_argument("--keep", action="store_true", help="do not delete the temporary workdir")
    demo.add_argument(
        "--patients", type=int, default=60, help="patients of the first clinic (the second: 1/6)"
    )
    demo.add_argument("--images", type=int, help="2D images (default 18, 8 with --once)")
    demo.add_argument("--volume-mb", type=int, help="3D volume size (default 40, 8 with --once)")
    demo.set_defaults(handler=_demo)
