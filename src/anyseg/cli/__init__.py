"""The ``anyseg`` command line: one module per subcommand, dispatched by :mod:`anyseg.cli.main`."""
