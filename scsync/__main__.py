import sys

from scsync.cli import main

sys.exit(main())
