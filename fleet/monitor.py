"""roadseg-monitor: subscribe to vehicles' topics and print their summaries, one line each.

    roadseg-monitor [--mqtt-host 127.0.0.1] [--mqtt-port 1883] [--mqtt-username U] [--tls-ca ca.crt]
                    [--mqtt-protocol auto|5|3.1.1] [--topic 'roadseg/+/#'] [--duration S] [--count N]

The MQTT version is negotiated (MQTT 5, else 3.1.1: roadseg-run's embedded
broker speaks 3.1.1 only) unless --mqtt-protocol pins it. --duration counts
from the start, connecting included.

Each line starts with the time it arrived (UTC). Every message passes the
fleet's intake (size, then schema) first; what it refuses is printed as a
``dropped`` line with the reason. Nothing a sender chose reaches the terminal
as a control sequence. Exit codes: 0 done, 4 the broker could not be reached,
refused the login, or the subscriber stopped.
"""
from __future__ import annotations

import datetime as dt
import sys
import time

from fleet.text import clean

KINDS = ("status", "coverage", "stats", "snapshot", "ha", "clash", "model")
#: vehicles whose last model state is remembered (to print transitions); beyond it, lines say no "from"
MAX_TRACKED = 1000


def release_ref(r) -> str:
    """``release 3 (name, sha256 abcdef12)`` of a :class:`edge_runtime.contract.payloads.ReleaseRef`."""
    if r is None:
        return "-"
    what = f"release {r.version}" if r.version is not None else "the install's model"
    extra = ", ".join(x for x in (clean(r.name, 60) if r.name else "",
                                  f"sha256 {r.sha256[:8]}" if r.sha256 else "") if x)
    return what + (f" ({extra})" if extra else "")


def describe_model_state(who: str, p, before: str | None = None) -> str:
    """One line for a model state (``p``: a validated ModelState): the transition from ``before``
    (the vehicle's previous state, when known), the release tried and the one running, bytes,
    and the reason (sender text, cleaned)."""
    change = f"{before} -> {p.state}" if before and before != p.state else p.state
    line = f"{who} model: {change}"
    if p.trying is not None and p.state not in ("idle", "succeeded"):
        line += f" {release_ref(p.trying)}"
    if p.state == "downloading" and p.total_bytes:
        line += f", {p.bytes} of {p.total_bytes} bytes"
    line += f"; running {release_ref(p.running)}"
    if p.reason:
        line += f"; reason: {clean(p.reason, 300)}"
    return line


def describe_announcement(topic: str, body: bytes) -> str:
    """One line for a release announcement (``roadseg/fleet/release`` or ``roadseg/<id>/release``):
    size, then schema (edge_runtime.contract.release); an empty one clears it."""
    from edge_runtime.contract import release
    scope = "fleet" if topic.split("/")[1] == "fleet" else clean(topic.split("/")[1], 64)
    if not body:
        return f"{scope} release announcement cleared"
    try:
        a = release.parse_announcement(body)
    except release.ReleaseError as e:
        return f"dropped a release announcement on {clean(topic, 120)}: {clean(e, 200)}"
    return f"{scope} release announced: release {a.version}, {clean(a.target, 120)} at {clean(a.repo, 120)}"


def stamp(epoch: float | None = None) -> str:
    """``HH:MM:SS.mmm`` UTC of ``epoch`` (default now)."""
    t = dt.datetime.fromtimestamp(time.time() if epoch is None else epoch, dt.timezone.utc)
    return t.strftime("%H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def describe(m) -> str:
    """One line for a :class:`fleet.intake.Message` (payload already validated), control characters removed."""
    p, who = m.payload, m.device
    if m.kind == "coverage":
        top = sorted(((c, getattr(p.coverage, c)) for c in type(p.coverage).model_fields), key=lambda kv: -kv[1])[:4]
        return (f"{who} coverage #{p.seq}: {p.frames} frames, {p.fps:.1f} FPS, "
                + ", ".join(f"{c} {100 * v:.0f}%" for c, v in top)
                + f"; road ahead drivable {100 * p.zones.road_ahead.drivable:.0f}%")
    if m.kind == "status":
        extra = [f"since {p.since}" if p.since else f"at {p.ts}"]
        extra += [f"reason {clean(p.reason, 80)}"] if p.reason else []
        extra += [f"error {clean(p.error, 160)}"] if p.error else []
        return f"{who} status: {clean(p.state, 32)} ({', '.join(extra)})"
    if m.kind == "stats":
        return (f"{who} stats: {p.fps.achieved:g} FPS (target {p.fps.target:g}), {p.dropped_frames} dropped, "
                f"latency p50 {p.latency_ms.p50:g} ms, camera {clean(p.camera.state, 32)}")
    if m.kind == "clash":
        return (f"{who} clash: two live installations use this device id: {p.installation} publishes nothing "
                f"under it while {p.holder} runs (give each vehicle its own --device-id)")
    if m.kind == "ha":
        return f"{who} ha: " + ", ".join(f"{c} {getattr(p.coverage, c):g}%" for c in type(p.coverage).model_fields)
    return f"{who} {m.kind}: {m.size} bytes"


def build_parser():
    """The monitor's options: the broker's as :func:`fleet.broker.add_arguments`, then its own."""
    from edge_runtime.commands import cli
    from fleet import broker
    p = cli.parser("roadseg-monitor", __doc__)
    broker.add_arguments(p)
    cli.deprecated(p, "--host", "--mqtt-host", "mqtt_host")
    cli.deprecated(p, "--port", "--mqtt-port", "mqtt_port", type=int)
    p.add_argument("--topic", default="roadseg/+/#")
    p.add_argument("--duration", type=float, help="seconds to run, connecting included")
    p.add_argument("--count", type=int, help="stop after this many coverage summaries")
    p.add_argument("--connect-timeout", type=float, default=30.0,
                   help="seconds to reach the broker (at most --duration); default 30")
    return p


class Printer:
    """The subscriber's handler: checks each message, prints one line, counts coverage summaries."""

    def __init__(self, out=sys.stdout):
        from fleet.intake import Intake
        self.intake, self.out, self.coverage = Intake(KINDS), out, 0
        self.subscriber = None
        self.model_states: dict[str, str] = {}  # device -> its last model state, for the transitions

    def __call__(self, topic: str, body: bytes, retained: bool) -> None:
        from fleet.intake import Dropped
        try:
            parts = topic.split("/")
            if len(parts) == 3 and parts[2] == "release":
                line, m = describe_announcement(topic, body), None
            else:
                m = self.intake.accept(topic, body, retained)
                line = describe(m) if m is not None else f"{clean(topic, 120)}: {len(body)} bytes"
            if m is not None and m.kind == "model":
                line = describe_model_state(m.device, m.payload, self.model_states.get(m.device))
                if m.device in self.model_states or len(self.model_states) < MAX_TRACKED:
                    self.model_states[m.device] = m.payload.state
        except Dropped as e:
            line = f"dropped from {clean(e.sender, 64)}: {clean(e, 200)}"
            m = None
        print(f"{stamp()} {line}", file=self.out, flush=True)
        if m is not None and m.kind == "coverage":
            self.coverage += 1
            if self.subscriber is not None:
                self.subscriber.notify()


def watch(sub, printer: Printer, *, count: int | None = None, duration: float | None = None,
          connect_timeout: float = 30.0) -> None:
    """Wait until ``count`` coverage summaries were printed or ``duration`` seconds passed
    (woken by each summary and each change of the subscriber, never polling). ``duration``
    counts from the call, connecting included: the wait for the broker ends at whichever of
    ``connect_timeout`` and ``duration`` comes first. Raises
    :class:`edge_runtime.commands.cli.RuntimeFailure` when the broker cannot be reached
    in that time, refuses the login, or the subscriber stops."""
    from edge_runtime.commands import cli
    start = time.monotonic()
    deadline = None if duration is None else start + duration
    wait = connect_timeout if duration is None else min(connect_timeout, duration)
    if not sub.wait_for(lambda: sub.connected or sub.refused or sub.stopped, wait):
        raise cli.RuntimeFailure(f"no connection to {sub.s.address} within {wait:g} s"
                                 + (f": {sub.error}" if sub.error else ""))

    def finished():
        return (sub.refused or sub.stopped is not None or bool(count and printer.coverage >= count)
                or (deadline is not None and time.monotonic() >= deadline))
    while not finished():
        sub.wait_for(finished, None if deadline is None else max(deadline - time.monotonic(), 0.01))
    if sub.refused:
        raise cli.RuntimeFailure(sub.error or "the broker refused the login")
    if sub.stopped is not None:
        raise cli.RuntimeFailure(f"the subscriber stopped: {sub.stopped}")


def main(argv: list[str] | None = None) -> int:
    """``roadseg-monitor``: the exit code (0, 2 bad options, 4 broker unreachable, login refused, subscriber stopped)."""
    from edge_runtime.commands import cli
    args = build_parser().parse_args(argv)

    def body():
        from fleet import broker
        printer = Printer()
        sub = broker.BrokerSubscriber(broker.from_args(args), [args.topic], printer)
        printer.subscriber = sub
        try:
            watch(sub, printer, count=args.count, duration=args.duration, connect_timeout=args.connect_timeout)
        finally:
            if sub.stopped is None:
                sub.close(timeout=1.0)

    return cli.run("roadseg-monitor", body)


if __name__ == "__main__":
    sys.exit(main())
