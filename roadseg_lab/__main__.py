"""``python -m roadseg_lab COMMAND``: see :mod:`roadseg_lab.cli`."""
import sys

from roadseg_lab.cli import main

sys.exit(main())
