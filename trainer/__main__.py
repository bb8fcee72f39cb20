"""``python -m trainer``: the same as ``roadseg-train``."""
import sys

from trainer.commands.train import main

sys.exit(main())
