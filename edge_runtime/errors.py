"""The exceptions every layer of the runtime raises, below ``commands/``:
``io/``, ``api/``, ``model/`` and the run loop raise them, and
:mod:`edge_runtime.commands.cli` maps them to exit codes (3, 4 and 78), so
nothing imports upward into the commands that compose it.
"""
from __future__ import annotations


class Refused(RuntimeError):
    """A quality gate refused the result (exit 3)."""


class RuntimeFailure(RuntimeError):
    """Something failed while running, not because of how it was called (exit 4)."""


class Unsupported(RuntimeError):
    """This install cannot do what the settings ask, and a restart will not change it (exit 78,
    which the systemd unit does not restart): e.g. a Jetson CSI camera with an OpenCV built
    without GStreamer."""
