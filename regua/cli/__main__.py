"""`python -m regua.cli`: the `regua` command, as the tests and benchmarks start it."""

import sys

from regua.cli import main

sys.exit(main())
