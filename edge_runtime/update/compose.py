"""roadseg-run's model updates, composed around the run loop (``--update-repo``):

* before the model loads, :class:`VehicleUpdates` picks the committed release's
  model from ``<state-dir>/models/`` (undoing a trial the process did not
  finish), else the install's model runs (release 0);
* once the loop and the MQTT publisher exist (:meth:`VehicleUpdates.attach`),
  the announcements ``roadseg/fleet/release`` and ``roadseg/<device-id>/release``
  go to the updater, its state goes out retained on ``<prefix>/model``, and it
  swaps models through ``Runner.request_swap``.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from edge_runtime.contract import release as contract
from edge_runtime.update.trial import Limits
from edge_runtime.update.updater import UpdateConfig, Updater

log = logging.getLogger("roadseg.update")


def config_from(settings) -> UpdateConfig:
    """The updater's settings from roadseg-run's (RunSettings). Raises ValueError (one line)
    for --update-repo without --trust-root or without --state-dir, or a URL that is not one."""
    import re
    if not settings.trust_root:
        raise ValueError("--update-repo needs --trust-root (the TUF root metadata the vehicle was installed with)")
    if not settings.state_dir:
        raise ValueError("--update-repo needs a --state-dir (the slots and the trusted metadata live there)")
    repos = [r.strip() for r in settings.update_repo.split(",") if r.strip()]
    for r in repos:
        if not re.fullmatch(contract.REPO_URL_PATTERN, r):
            raise ValueError("--update-repo: each URL must be http(s)://host[:port]/path (no user, query or fragment)")
    return UpdateConfig(Path(settings.state_dir), Path(settings.trust_root), repos, settings.device_id,
                        probation_s=settings.probation, max_bytes=int(settings.update_max_mb * (1 << 20)),
                        timeout_s=settings.update_timeout,
                        limits=Limits(min_agreement=settings.probation_agreement))


class VehicleUpdates:
    """The updater of one roadseg-run (see the module docstring). Raises ValueError
    (settings) as :func:`config_from`, or for a trust root that is not TUF root metadata."""

    def __init__(self, settings):
        self.s = settings
        self._publisher = None
        self._pending: dict | None = None
        self.updater = Updater(config_from(settings), make_segmenter=self._make, publish_state=self._publish)
        self.model = self.updater.boot()

    def _make(self, path: Path):
        from edge_runtime.model.interpreter import parse_delegate_options
        from edge_runtime.model.segmenter import DeviceSegmenter
        return DeviceSegmenter(path, self.s.threads, self.s.delegate, parse_delegate_options(self.s.delegate_options))

    def segmenter(self):
        """The committed release's segmenter, or None (the install's model runs)."""
        if self.model is None:
            return None
        try:
            seg = self._make(self.model)
        except Exception as e:  # verified at install, so this is the machine: fall back to release 0
            log.error("the installed release %s does not load (%s): running the install's model", self.model, e)
            self.updater.running = None
            return None
        seg.release = self.updater.running.get("version") if self.updater.running else None
        return seg

    def _publish(self, payload: dict) -> None:
        if self._publisher is None:
            self._pending = payload  # the latest state, published once MQTT is up
            return
        self._publisher.publish(contract.MODEL_STATE_KIND, payload, retain=True)

    def attach(self, runner, publisher, stack: contextlib.ExitStack) -> None:
        """Wire the updater to the loop (swaps, FPS) and to MQTT (announcements in, state out),
        start its thread, and stop it with ``stack``."""
        u = self.updater
        if u.running is None:
            d = runner.seg.describe()
            u.install_model = {"name": d["name"], "sha256": d["sha256"]}
            if self._pending is not None:
                self._pending = dict(self._pending, running=u.running_ref())
        u.swap, u.fps_fn = runner.request_swap, (lambda: runner.achieved)
        self._publisher = publisher
        if self._pending is not None:
            publisher.publish(contract.MODEL_STATE_KIND, self._pending, retain=True)
        publisher.subscribe(contract.FLEET_RELEASE_TOPIC, lambda b: u.on_announcement("fleet", b),
                            max_bytes=contract.MAX_ANNOUNCEMENT_BYTES)
        if hasattr(publisher, "topic"):
            publisher.subscribe(publisher.topic(contract.RELEASE_KIND), lambda b: u.on_announcement("device", b),
                                max_bytes=contract.MAX_ANNOUNCEMENT_BYTES)
        u.start()
        stack.callback(u.stop)

    @property
    def disk_fault(self) -> dict | None:
        """The updater's :attr:`~edge_runtime.update.updater.Updater.disk_fault`: None, or
        ``{"store": "model-update", "path", "error", "since"}`` while the state dir's disk refuses
        the updater's writes (updates wait; the running model goes on). Thread-safe."""
        return self.updater.disk_fault

    def describe(self) -> dict:
        """The running release, the slots, the last state and the disk fault, if any (the device
        API, roadseg-doctor)."""
        out = {"running": self.updater.running_ref(), "slots": self.updater.slots.describe(),
               "state": self.updater.state.get("state")}
        fault = self.updater.disk_fault
        return dict(out, fault=fault) if fault else out


def doctor_report(trust_root: str | None, state_dir: str | None) -> dict:
    """What roadseg-doctor shows about updates: the trust root (version, expiry, key ids per
    role; or its error), the running release (the committed slot's, or the install's model)
    and the A/B slots. Raises nothing: problems are in ``error`` / ``trust_root.error``."""
    from edge_runtime.update.slots import Slots
    from edge_runtime.update.updater import describe_trust_root
    out: dict = {}
    if trust_root:
        try:
            out["trust_root"] = describe_trust_root(trust_root)
        except ValueError as e:
            out["trust_root"] = {"path": trust_root, "error": str(e)}
    if state_dir:
        slots = Slots(state_dir).describe()
        pointer = slots["pointer"]
        running = slots.get(pointer["slot"]) if pointer else None
        out.update(running=running or {"release": "the install's model (release 0)"}, slots=slots)
    return out
