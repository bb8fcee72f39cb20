"""The fleet side's command-line entry points (argparse lives here, not in the libraries)."""
