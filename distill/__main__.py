"""``python -m distill``: the same as ``roadseg-distill``."""
import sys

from distill.commands.distill import main

sys.exit(main())
