"""``python -m ptqdebug``: the same as the ``ptqdebug`` command."""

import sys

from .cli import main

sys.exit(main())
