"""`python -m emosteer.cli`: the same as the `emosteer` console script (accelerate launch uses it)."""

import sys

from emosteer.cli import main

sys.exit(main())
