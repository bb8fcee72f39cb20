"""Every entry point: argument parsing, settings files and the one command-line convention."""
