"""`python -m muxtop` runs the same CLI as the `muxtop` script."""

import sys

from muxtop.cli import main

sys.exit(main())
