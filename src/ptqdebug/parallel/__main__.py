"""``python -m ptqdebug.parallel``: a helper process of a local worker pool (:mod:`ptqdebug.parallel.helper`)."""

import sys

from .helper import main

if __name__ == "__main__":
    sys.exit(main())
