"""`python -m runtime` is `graphc-runtime`."""

import sys

from runtime.cli import main

sys.exit(main())
