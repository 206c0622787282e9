"""``python -m omnifuse.bench``: one benchmark run in this process, as the harness starts it (or ``--table``)."""

import sys

from omnifuse.bench.harness import main

sys.exit(main())
