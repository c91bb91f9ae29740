"""``python -m necgs.distributed``: one rank of a distributed compression (see :mod:`necgs.distributed.worker`)."""

import sys

from necgs.distributed.worker import main

sys.exit(main())
