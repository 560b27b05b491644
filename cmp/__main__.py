"""`python -m cmp`: the same as `cmpd` (cmp/cli)."""

import sys

from cmp.cli import main

if __name__ == "__main__":
    sys.exit(main())
