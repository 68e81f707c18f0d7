"""``python -m anyseg ...`` runs the ``anyseg`` command (useful where the console script is not
on PATH, e.g. with the package on PYTHONPATH only)."""

import sys

from anyseg.cli.main import main

sys.exit(main())
