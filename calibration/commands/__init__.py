"""Command lines of calibration (every argparse of ``calibration`` lives
here): :mod:`calibration.commands.calibrate` is ``roadseg-calibrate``."""
