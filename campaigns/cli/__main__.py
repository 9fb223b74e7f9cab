"""``python -m campaigns.cli`` runs the command line (what the ``campaigns`` script runs)."""

import sys

from campaigns.cli import main

sys.exit(main())
