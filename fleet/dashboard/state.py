"""What the dashboard knows about the fleet: one subscriber to
``roadseg/+/{coverage,status,stats,snapshot}`` keeping, per vehicle, its state
(and since when), its API address, bounded histories of coverage summaries and
stats, and its latest snapshot. Memory is bounded: ``HISTORY`` messages of each
kind per vehicle and ``MAX_VEHICLES`` vehicles (the longest silent is forgotten)."""
from __future__ import annotations

import collections
import json
import threading
import time

HISTORY = 600          # 10 minutes of 1 s summaries; 100 minutes of 10 s stats
MAX_VEHICLES = 500
MAX_SNAPSHOT = 512 * 1024


class Fleet:
    def __init__(self, host: str = "127.0.0.1", port: int = 1883, prefix: str = "roadseg"):
        import paho.mqtt.client as mqtt
        self.host, self.port, self.prefix = host, port, prefix
        self.lock = threading.Lock()
        self.vehicles: dict[str, dict] = {}
        self.connected = False  # True once the subscriptions are acknowledged: nothing published later is missed
        self._sub_mid: int | None = None
        self.error: str | None = None
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        c.on_connect = self._on_connect
        c.on_disconnect = lambda *a, **k: setattr(self, "connected", False)
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.reconnect_delay_set(1, 10)
        self.client = c
        c.connect_async(host, port, keepalive=15)
        c.loop_start()

    def _on_connect(self, c, u, flags, rc, props=None):
        if rc.is_failure:
            self.connected = False
            return
        _, self._sub_mid = c.subscribe([(f"{self.prefix}/+/{kind}", 1)
                                        for kind in ("coverage", "status", "stats", "snapshot")])

    def _on_subscribe(self, c, u, mid, reason_codes, props=None):
        if mid == self._sub_mid:
            self.connected = not any(rc.is_failure for rc in reason_codes)

    def _vehicle(self, device: str) -> dict:
        v = self.vehicles.get(device)
        if v is None:
            if len(self.vehicles) >= MAX_VEHICLES:
                oldest = min(self.vehicles.values(), key=lambda x: x["last_seen"] or 0)
                del self.vehicles[oldest["device_id"]]
            v = self.vehicles[device] = {
                "device_id": device, "state": "unknown", "status": {}, "stats": {},
                "stats_history": collections.deque(maxlen=HISTORY),
                "coverage": collections.deque(maxlen=HISTORY), "snapshot": None, "snapshot_at": None,
                "last_seen": None}
        return v

    def _on_message(self, c, u, msg):
        parts = msg.topic.split("/")
        if len(parts) != 3:
            return
        _, device, kind = parts
        if kind == "snapshot":
            if msg.payload[:2] != b"\xff\xd8" or len(msg.payload) > MAX_SNAPSHOT:
                return  # not a JPEG, or larger than any vehicle sends
            with self.lock:
                v = self._vehicle(device)
                v["snapshot"], v["snapshot_at"] = bytes(msg.payload), time.time()
            return
        try:
            p = json.loads(msg.payload)
        except ValueError:
            return
        if not isinstance(p, dict):
            return
        with self.lock:
            v = self._vehicle(device)
            if not msg.retain:
                v["last_seen"] = time.time()
            elif v["last_seen"] is None:  # a retained message says nothing about now
                from fleet.dashboard.health import parse_ts
                v["last_seen"] = parse_ts(p.get("ts"))
            if kind == "status":
                v["state"] = p.get("state", "unknown")
                v["status"] = p
            elif kind == "stats":
                v["stats"] = p
                v["stats_history"].append(p)
            elif kind == "coverage":
                v["coverage"].append(p)

    def api_url(self, device: str, override: str = "") -> str | None:
        """The vehicle's own device API (announced in its status), unless overridden."""
        if override:
            return override.rstrip("/")
        with self.lock:
            v = self.vehicles.get(device)
            return (v or {}).get("status", {}).get("api")

    def view(self) -> list[dict]:
        """A consistent copy of every vehicle (for alerts and charts)."""
        with self.lock:
            return [dict(v, stats_history=list(v["stats_history"]), coverage=list(v["coverage"]))
                    for _, v in sorted(self.vehicles.items())]

    def snapshot(self) -> list[dict]:
        """Rows for the fleet table, plain values only."""
        rows = []
        now = time.time()
        for v in self.view():
            last = v["coverage"][-1] if v["coverage"] else {}
            st = v["stats"]
            fps = st.get("fps", {})
            lat = st.get("latency_ms", {})
            mqtt = st.get("mqtt", {})
            model = v["status"].get("model") or st.get("model") or {}
            rows.append({
                "vehicle": v["device_id"], "state": v["state"],
                "fps": last.get("fps") or fps.get("achieved"), "target fps": fps.get("target"),
                "dropped frames": st.get("dropped_frames"), "latency p50 ms": lat.get("p50"),
                "latency p99 ms": lat.get("p99"), "CPU °C": st.get("cpu_temp_c"),
                "RSS MB": (st.get("memory") or {}).get("rss_mb"), "MQTT queued": mqtt.get("queued"),
                "MQTT dropped": mqtt.get("dropped"),
                "uptime min": round(st["uptime_s"] / 60, 1) if st.get("uptime_s") is not None else None,
                "road ahead drivable %": round(100 * last["zones"]["road_ahead"]["drivable"], 1) if last else None,
                "model": model.get("name"), "sha256": (model.get("sha256") or "")[:12] or None,
                "summaries": len(v["coverage"]),
                "last seen s ago": round(now - v["last_seen"], 1) if v["last_seen"] else None,
                "live view": v["status"].get("api")})
        return rows

    def history(self, device: str) -> list[dict]:
        with self.lock:
            v = self.vehicles.get(device)
            return list(v["coverage"]) if v else []

    def stats_history(self, device: str) -> list[dict]:
        with self.lock:
            v = self.vehicles.get(device)
            return list(v["stats_history"]) if v else []
