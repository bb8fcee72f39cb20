"""The dashboard against one hostile sender (issue 32): a number that would remove the fleet table is
refused at the schema, and a progressive JPEG whose decoding would take the MQTT thread for seconds is
refused unseen. Fed through the dashboard's own state code (FleetState.handle, as the subscriber does)."""
from __future__ import annotations

import io
import json
import re
import struct

import numpy as np
import pandas as pd
import pytest

from tests.fleet.messages import stats_body, status_body


def crafted_progressive_jpeg(side: int = 1440, repeats: int = 41_610) -> bytes:
    """The JPEG of issue 32: a real progressive 1440 x 1440 JPEG's header and DC scan, then one 12-byte AC
    scan (an end-of-band run over all 32,400 luminance blocks, with its own one-symbol Huffman table)
    repeated ``repeats`` times: about 500 KB, within the byte and pixel caps, and each scan is a pass over
    the picture for a decoder (6.5 s in all before the scan count was checked)."""
    from PIL import Image
    out = io.BytesIO()
    Image.fromarray(np.full((side, side, 3), 128, np.uint8)).save(out, "JPEG", progressive=True, quality=30)
    data = out.getvalue()
    sos = data.index(b"\xff\xda")
    dc_end = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]").search(data, sos + 2 + int.from_bytes(data[sos + 2:sos + 4],
                                                                                            "big")).start()
    dht = b"\xff\xc4" + struct.pack("!H", 20) + b"\x13" + bytes([1] + [0] * 15) + b"\xe0"  # AC table 3: EOB14 = "0"
    blocks = ((side + 7) // 8) ** 2
    run_bits = "0" + format(blocks - 2**14, "014b") + "1"  # EOB14, its 14 extra bits, one bit of padding
    scan = b"\xff\xda" + struct.pack("!H", 8) + bytes([1, 1, 0x03, 1, 63, 0]) + int(run_bits, 2).to_bytes(2, "big")
    assert len(scan) == 12
    return data[:dc_end] + dht + scan * repeats + b"\xff\xd9"


def test_a_progressive_jpeg_over_the_scan_count_is_refused_unseen():
    from PIL import Image

    from fleet.dashboard.snapshot import MAX_SCANS, check_jpeg, count_scans
    from fleet.dashboard.state import FleetState
    bomb = crafted_progressive_jpeg()
    assert len(bomb) < 512 * 1024 and count_scans(bomb) == MAX_SCANS + 1  # counted up to the limit, then stops
    f = FleetState()
    f.handle("roadseg/car2/snapshot", bomb)
    assert f.intake.dropped_total == 1 and f.view() == []
    [(sender, drops)] = f.intake.drops()
    assert sender == "car2" and f"more than {MAX_SCANS} scans" in drops.last_reason
    # an ordinary progressive JPEG (libjpeg's 10 scans) and a baseline one are still shown
    good = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (240, 320, 3), np.uint8)).save(
        good, "JPEG", progressive=True)
    assert count_scans(good.getvalue()) == 10 and check_jpeg(good.getvalue()) == (320, 240)
    f.handle("roadseg/car1/snapshot", good.getvalue())
    assert [v.device_id for v in f.view() if v.snapshot] == ["car1"]


@pytest.mark.parametrize("field,value", [
    ("dropped_frames", 10**30), ("frames", 2**53), ("mqtt.queued", 10**30), ("mqtt.extra_counter", 1e300),
    ("cpu_temp_c", 1e308), ("uptime_s", 1e30), ("fps.achieved", 1e30), ("latency_ms.p99", 1e30),
    ("memory.rss_mb", 1e30)])
def test_one_number_out_of_range_is_refused_and_the_fleet_table_stays(field, value):
    from edge_runtime.contract import payloads
    from fleet.dashboard.state import FleetState
    f = FleetState()
    f.handle("roadseg/car1/status", status_body("car1").encode())
    f.handle("roadseg/car1/stats", stats_body("car1").encode())
    hostile = json.loads(stats_body("car2"))
    *path, last = field.split(".")
    node = hostile
    for k in path:
        node = node[k]
    node[last] = value
    with pytest.raises(payloads.PayloadError):
        payloads.parse("stats", json.dumps(hostile).encode())
    f.handle("roadseg/car2/stats", json.dumps(hostile).encode())
    assert f.intake.dropped_total == 1
    # what the page's health table makes of the fleet: every count fits its Int64 column
    rows = [{"vehicle": v.device_id, "dropped frames": v.stats.dropped_frames if v.stats else None,
             "MQTT queued": v.stats.mqtt.queued if v.stats else None} for v in f.view()]
    df = pd.DataFrame(rows).astype({"dropped frames": "Int64", "MQTT queued": "Int64"})
    assert list(df["vehicle"]) == ["car1"]
    # the largest values the schema allows still fit the table and the alerts
    edge = json.loads(stats_body("car3"))
    edge["dropped_frames"] = edge["mqtt"]["queued"] = payloads.MAX_COUNT
    edge["cpu_temp_c"] = 250
    f.handle("roadseg/car3/stats", json.dumps(edge).encode())
    view = {v.device_id: v for v in f.view()}
    assert view["car3"].stats.dropped_frames == payloads.MAX_COUNT
    pd.DataFrame([{"d": view["car3"].stats.dropped_frames}]).astype({"d": "Int64"})
