r"""roadseg-rollout: a staged rollout of a model release over MQTT (fleet.rollout).

    roadseg-rollout start --state rollout.json --version 3 --target releases/3/NAME.tflite \
        --repo https://releases.example/fleet/ --devices car1,car2,car3 --canary car1 \
        [--rate 6] [--abort-percent 20] [--min-reached 1] [--mqtt-host H ...]
    roadseg-rollout resume --state rollout.json [--mqtt-host H ...]
    roadseg-rollout status --state rollout.json
    roadseg-rollout abort --state rollout.json
    roadseg-rollout rollback --version 4 --target releases/4/NAME.tflite --repo URL [--devices car1,...]

start/resume announce on roadseg/<device-id>/release (retained), read each vehicle's
roadseg/<device-id>/model, print each transition, and stop at done or aborted (exit 0,
or 3 when aborted). rollback points the fleet at a release: make it with
``roadseg-release rerelease`` of the old release first (vehicles never run a lower version).
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time

from edge_runtime.commands import cli

PROG = "roadseg-rollout"


def build_parser() -> argparse.ArgumentParser:
    """The parser (subcommands start, resume, status, abort, rollback)."""
    from fleet.broker import add_arguments
    p = cli.parser(PROG, __doc__)
    sub = p.add_subparsers(dest="command", required=True, parser_class=cli.ConventionParser)
    for name in ("start", "resume", "status", "abort"):
        s = sub.add_parser(name, allow_abbrev=False)
        s.add_argument("--state", required=True, help="the rollout file (plan and progress, JSON)")
        if name in ("start", "resume"):
            add_arguments(s)
            s.add_argument("--timeout", type=float, default=3600.0, help="seconds to run at most (default 3600)")
        if name == "start":
            _release_args(s)
            s.add_argument("--devices", required=True, help="the vehicles, comma-separated")
            s.add_argument("--canary", required=True, help="the canary vehicles, comma-separated")
            s.add_argument("--rate", type=float, default=6.0, help="vehicles per minute after the canary")
            s.add_argument("--abort-percent", type=float, default=20.0,
                           help="stop when more than this share of the vehicles reached failed (default 20)")
            s.add_argument("--min-reached", type=int, default=1, help="vehicles reached before the abort rule "
                                                                      "applies (default 1)")
    s = sub.add_parser("rollback", allow_abbrev=False)
    add_arguments(s)
    _release_args(s)
    s.add_argument("--devices", default="", help="vehicles whose overrides to clear, comma-separated")
    return p


def _release_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("--version", dest="release", type=int, required=True, help="the release version")
    s.add_argument("--target", required=True, help="its model's target path, e.g. releases/3/NAME.tflite")
    s.add_argument("--repo", required=True, help="the repository's base URL the vehicles fetch from")


def _split(text: str) -> list[str]:
    return [d.strip() for d in text.split(",") if d.strip()]


def _publisher(settings):
    """A paho client for announcing (retained, QoS 1)."""
    import paho.mqtt.client as mqtt
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"roadseg-rollout-{int(time.time())}",
                    protocol=mqtt.MQTTv311)
    if settings.username:
        c.username_pw_set(settings.username, settings.password)
    if settings.tls_ca or settings.tls_cert:
        c.tls_set(ca_certs=settings.tls_ca, certfile=settings.tls_cert, keyfile=settings.tls_key)
    c.connect(settings.host, settings.port, keepalive=30)
    c.loop_start()

    def publish(topic: str, payload: bytes, retain: bool) -> None:
        c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)
    return c, publish


def _drive(args, rollout) -> int:
    from edge_runtime.contract import payloads
    from fleet.broker import BrokerSubscriber, from_args
    from fleet.monitor import stamp
    from fleet.text import clean
    settings = from_args(args)
    client, publish = _publisher(settings)
    cond = threading.Condition()

    def handler(topic: str, body: bytes, retained: bool = False, *_):
        parts = topic.split("/")
        if len(parts) != 3 or parts[2] != "model" or len(body) > payloads.MAX_BYTES["model"]:
            return
        try:
            state = payloads.parse("model", body)
        except payloads.PayloadError as e:
            print(f"{stamp()} dropped a model state from {clean(parts[1])}: {e}", flush=True)
            return
        with cond:
            before = rollout.progress.outcomes.get(parts[1])
            outcome = rollout.observe(parts[1], state)
            if outcome is not None and outcome != before:
                print(f"{stamp()} {clean(parts[1])}: {outcome}" + (f" ({clean(state.reason)})" if state.reason else ""),
                      flush=True)
            cond.notify_all()
    sub = BrokerSubscriber(settings, ["roadseg/+/model"], handler, client_id="roadseg-rollout")
    try:
        deadline = time.monotonic() + args.timeout
        phase = ""
        with cond:
            while time.monotonic() < deadline:
                now_phase = rollout.step(publish)
                if now_phase != phase:
                    phase = now_phase
                    print(f"{stamp()} rollout of release {rollout.plan.version}: {phase}"
                          + (f": {rollout.progress.reason}" if rollout.progress.reason else ""), flush=True)
                if phase in ("done", "aborted"):
                    break
                cond.wait(min(1.0, 60.0 / rollout.plan.rate))
    finally:
        sub.close()
        client.loop_stop()
        client.disconnect()
    if phase == "aborted":
        return cli.EXIT_REFUSED
    if phase != "done":
        raise cli.RuntimeFailure(f"the rollout did not finish within --timeout {args.timeout:g} s (phase {phase}); "
                                 "resume it")
    return 0


def main(argv: list[str] | None = None) -> int:
    """roadseg-rollout; exit 0 done, 3 aborted by its rule, 2 bad input, 4 broker or timeout."""
    args = build_parser().parse_args(argv)

    def body():
        from fleet.rollout import Plan, Rollout, rollback
        if args.command == "start":
            plan = Plan(args.release, args.target, args.repo, _split(args.devices), _split(args.canary), args.rate,
                        args.abort_percent / 100.0, args.min_reached)
            return _drive(args, Rollout.start(args.state, plan))
        if args.command == "rollback":
            from fleet.broker import from_args
            client, publish = _publisher(from_args(args))
            try:
                rollback(publish, args.release, args.target, args.repo, _split(args.devices))
            finally:
                client.loop_stop()
                client.disconnect()
            print(f"the fleet is pointed at release {args.release}")
            return 0
        rollout = Rollout(args.state)
        if args.command == "resume":
            return _drive(args, rollout)
        if args.command == "abort":
            rollout.abort()
        print(json.dumps(rollout.describe(), indent=1))
        return 0
    return cli.run(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
