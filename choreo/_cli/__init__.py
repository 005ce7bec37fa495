"""The ``choreo`` command line: one module per command group."""
