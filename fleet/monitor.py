"""roadseg-monitor: subscribe to vehicles' topics and print their summaries.

    roadseg-monitor [--mqtt-host 127.0.0.1] [--mqtt-port 1883] [--topic 'roadseg/+/#'] [--duration S] [--count N]
"""
from __future__ import annotations

import json
import sys
import threading
import time


def describe(topic: str, p: dict) -> str:
    kind = topic.rsplit("/", 1)[-1]
    if kind == "coverage":
        top = sorted(p["coverage"].items(), key=lambda kv: -kv[1])[:4]
        return (f"{p['device_id']} coverage #{p['seq']}: {p['frames']} frames, {p['fps']:.1f} FPS, "
                + ", ".join(f"{c} {100 * v:.0f}%" for c, v in top)
                + f"; road ahead drivable {100 * p['zones']['road_ahead']['drivable']:.0f}%")
    if kind == "status":
        return f"{p.get('device_id')} status: {p.get('state')}"
    if kind == "stats":
        return (f"{p['device_id']} stats: {p['fps']['achieved']} FPS (target {p['fps']['target']}), "
                f"{p['dropped_frames']} dropped, latency p50 {p['latency_ms']['p50']} ms")
    return f"{topic}: {json.dumps(p)[:120]}"


def main(argv: list[str] | None = None) -> int:
    import paho.mqtt.client as mqtt

    from edge_runtime.commands import cli
    p = cli.parser("roadseg-monitor", __doc__)
    p.add_argument("--mqtt-host", default="127.0.0.1", help="broker host")
    p.add_argument("--mqtt-port", type=int, default=1883)
    cli.deprecated(p, "--host", "--mqtt-host", "mqtt_host")
    cli.deprecated(p, "--port", "--mqtt-port", "mqtt_port", type=int)
    p.add_argument("--topic", default="roadseg/+/#")
    p.add_argument("--duration", type=float, help="seconds to listen")
    p.add_argument("--count", type=int, help="stop after this many coverage summaries")
    p.add_argument("--connect-timeout", type=float, default=30.0)
    args = p.parse_args(argv)
    done = threading.Event()
    seen = {"coverage": 0}

    def on_connect(c, u, f, rc, props=None):
        c.subscribe(args.topic, qos=1)

    def on_message(c, u, msg):
        try:
            payload = json.loads(msg.payload)
        except ValueError:
            return
        print(describe(msg.topic, payload), flush=True)
        if msg.topic.endswith("/coverage"):
            seen["coverage"] += 1
            if args.count and seen["coverage"] >= args.count:
                done.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.on_connect, c.on_message = on_connect, on_message
    deadline = time.monotonic() + args.connect_timeout
    while True:  # the broker may still be starting
        try:
            c.connect(args.mqtt_host, args.mqtt_port, keepalive=15)
            break
        except OSError as e:
            if time.monotonic() > deadline:
                print(f"roadseg-monitor: error: cannot reach {args.mqtt_host}:{args.mqtt_port}: {e}", file=sys.stderr)
                return cli.EXIT_RUNTIME
            time.sleep(0.3)
    c.loop_start()
    try:
        done.wait(args.duration)
    except KeyboardInterrupt:
        pass
    c.loop_stop()
    c.disconnect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
