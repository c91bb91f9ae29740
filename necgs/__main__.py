"""``python -m necgs`` runs the CLI."""

import sys

from necgs.cli import main

sys.exit(main())
