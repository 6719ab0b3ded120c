"""``python -m sklearn_din``: run the demo (``--help`` for options)."""

import sys

from ._demo import main

if __name__ == "__main__":
    sys.exit(main())
