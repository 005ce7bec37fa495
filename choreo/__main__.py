"""``python -m choreo``: the ``choreo`` command, where only the interpreter is known."""

import sys

from choreo._cli.main import main

sys.exit(main())
