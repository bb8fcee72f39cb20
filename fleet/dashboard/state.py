"""What the dashboard knows about the fleet: one subscriber to
``roadseg/+/{coverage,status,stats}`` keeping, per vehicle, its online state,
latest stats and a bounded history of coverage summaries."""
import collections
import json
import threading
import time

HISTORY = 600


class Fleet:
    def __init__(self, host: str = "127.0.0.1", port: int = 1883, prefix: str = "roadseg"):
        import paho.mqtt.client as mqtt
        self.host, self.port, self.prefix = host, port, prefix
        self.lock = threading.Lock()
        self.vehicles: dict[str, dict] = {}
        self.connected = False
        self.error: str | None = None
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        c.on_connect = self._on_connect
        c.on_disconnect = lambda *a, **k: setattr(self, "connected", False)
        c.on_message = self._on_message
        c.reconnect_delay_set(1, 10)
        self.client = c
        c.connect_async(host, port, keepalive=15)
        c.loop_start()

    def _on_connect(self, c, u, flags, rc, props=None):
        self.connected = not rc.is_failure
        for kind in ("coverage", "status", "stats"):
            c.subscribe(f"{self.prefix}/+/{kind}", qos=1)

    def _vehicle(self, device: str) -> dict:
        return self.vehicles.setdefault(device, {"device_id": device, "state": "unknown", "status": {},
                                                 "stats": {}, "coverage": collections.deque(maxlen=HISTORY),
                                                 "last_seen": None})

    def _on_message(self, c, u, msg):
        parts = msg.topic.split("/")
        if len(parts) != 3:
            return
        _, device, kind = parts
        try:
            p = json.loads(msg.payload)
        except ValueError:
            return
        with self.lock:
            v = self._vehicle(device)
            v["last_seen"] = time.time()
            if kind == "status":
                v["state"] = p.get("state", "unknown")
                v["status"] = p
            elif kind == "stats":
                v["stats"] = p
            elif kind == "coverage":
                v["coverage"].append(p)

    def snapshot(self) -> list[dict]:
        """Rows for the fleet table, newest data first, plain values only."""
        with self.lock:
            rows = []
            for d, v in sorted(self.vehicles.items()):
                last = v["coverage"][-1] if v["coverage"] else {}
                rows.append({"vehicle": d, "state": v["state"],
                             "fps": last.get("fps") or v["stats"].get("fps", {}).get("achieved"),
                             "road ahead drivable %": round(100 * last["zones"]["road_ahead"]["drivable"], 1)
                             if last else None,
                             "model": (v["status"].get("model") or {}).get("name"),
                             "summaries": len(v["coverage"]),
                             "last seen s ago": round(time.time() - v["last_seen"], 1) if v["last_seen"] else None})
            return rows

    def history(self, device: str) -> list[dict]:
        with self.lock:
            v = self.vehicles.get(device)
            return list(v["coverage"]) if v else []
