"""What vehicles and any other client on the broker send, for the fleet tests:
payloads built by the vehicle's own builders (with a chosen ``ts`` where a test
needs one), real JPEGs (with a forged header where a test needs one), and a
raw MQTT client that publishes bytes without any check of its own."""
from __future__ import annotations

import io
import json

import numpy as np

from edge_runtime.contract import payloads
from edge_runtime.contract.coverage import CoverageAggregator

MODEL = {"name": "student-int8", "sha256": "ab" * 32}


class Raw:
    """Any client on the broker (no checks of its own): publishes bytes, waits for every acknowledgement."""

    def __init__(self, port):
        import paho.mqtt.client as mqtt
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def send(self, *items):
        """``(topic, body[, retain])`` each, at QoS 1."""
        infos = [self.c.publish(t, b, qos=1, retain=bool(r and r[0])) for t, b, *r in items]
        for i in infos:
            i.wait_for_publish(20)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def coverage_body(device, seq=1, ts=None):
    """A coverage summary of ``device`` as JSON text (``ts``: an RFC 3339 time instead of now)."""
    agg = CoverageAggregator()
    agg.add(np.array([[1, 1, 7, 5], [1, 1, 6, 4]], np.uint8), 5.0, 6.0)
    p = payloads.coverage(device, seq, agg.summary(), 9.5, MODEL)
    return json.dumps(p | ({"ts": ts} if ts else {}))


def stats_body(device, ts=None, achieved=15.0, target=15, temp=55.0, queued=0, **mqtt):
    """A stats message of ``device`` as JSON text: FPS achieved/target, CPU °C, MQTT counters."""
    p = payloads.stats(device, achieved_fps=achieved, target_fps=target, frames=100, dropped_frames=0,
                       skipped_ticks=0, camera_reconnects=0, camera_state="live",
                       latency_ms={"p50": 20.0, "p90": 25.0, "p99": 30.0}, cpu_temp_c=temp,
                       memory={"rss_mb": 100.0}, uptime_s=60.0, mqtt={"queued": queued, **mqtt}, model=MODEL)
    return json.dumps(p | ({"ts": ts} if ts else {}))


def status_body(device, state="online", ts=None, **extra):
    """A status of ``device`` as JSON text; ``extra``: Status fields (reason, error, api, since, ...)."""
    return json.dumps(payloads.status(state, device, **extra) | ({"ts": ts} if ts else {}))


def jpeg(w=32, h=24, claim=None, tail=b"") -> bytes:
    """A real JPEG from Pillow; ``claim=(W, H)`` rewrites its SOF0 header to state other dimensions."""
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (10, 120, 200)).save(buf, "JPEG", quality=50)
    data = bytearray(buf.getvalue())
    if claim:
        i = data.index(b"\xff\xc0")  # SOF0: length(2) precision(1) height(2) width(2)
        data[i + 5:i + 7] = claim[1].to_bytes(2, "big")
        data[i + 7:i + 9] = claim[0].to_bytes(2, "big")
    return bytes(data) + tail
