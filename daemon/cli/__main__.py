"""`python -m sarai.daemon.cli`: the same as the `sarai` command."""

import sys

from sarai.daemon.cli.main import main

sys.exit(main())
