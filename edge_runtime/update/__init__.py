"""Model updates on the vehicle (issue 29): fetch a signed release in the
background, verify it (TUF), install it into an A/B slot, check it on this
vehicle, swap it into the running loop between two frames, watch it on
probation and roll back by itself.

* :mod:`edge_runtime.update.fetch`: the bounded HTTP fetcher (bytes, time, progress).
* :mod:`edge_runtime.update.slots`: the A/B slots under ``<state-dir>/models/`` and the
  atomic ``current.json`` pointer: a power cut at any instant leaves a verified model.
* :mod:`edge_runtime.update.trial`: the check (load-time contract, golden frames) and the
  probation wrapper that watches the new model against the previous one.
* :mod:`edge_runtime.update.updater`: :class:`~edge_runtime.update.updater.Updater`, its
  background thread and the model state it reports (``roadseg/<device-id>/model``).
"""
