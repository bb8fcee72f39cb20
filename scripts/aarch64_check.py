"""Run inside the arm64 root by scripts/test_aarch64.sh (any machine works):
the installed runtime streams coverage from a short video through the
embedded broker, roadseg-bench runs, and the model's raw output on a fixed
frame is saved for comparison with x86.

    python aarch64_check.py MODEL OUT_DIR
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np


def main(model: str, out_dir: str) -> int:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bindir = Path(sys.executable).parent
    video = out / "drive.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    rng = np.random.default_rng(0)
    for i in range(40):
        f = np.zeros((120, 160, 3), np.uint8)
        f[:60] = (235, 206, 135)           # sky (BGR)
        f[60:] = (90, 90, 90)              # road
        f[70:100, (i * 3) % 120:(i * 3) % 120 + 30] = (30, 30, 200)  # a moving "car"
        w.write(np.clip(f.astype(int) + rng.integers(-8, 8, f.shape), 0, 255).astype(np.uint8))
    w.release()

    import paho.mqtt.client as mqtt
    port = 18830 + os.getpid() % 1000
    got: list[dict] = []
    run = subprocess.Popen([str(bindir / "roadseg-run"), "--model", model, "--source", str(video), "--mqtt-port",
                            str(port), "--device-id", "arm1", "--fps", "10", "--max-frames", "40",
                            "--publish-interval", "0.5", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="arm-check")
    c.on_message = lambda cl, u, m: got.append(json.loads(m.payload))
    c.on_connect = lambda cl, u, f, rc, p=None: cl.subscribe("roadseg/arm1/coverage")
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            c.connect("127.0.0.1", port)
            break
        except OSError:
            time.sleep(0.2)
    c.loop_start()
    try:
        stdout, stderr = run.communicate(timeout=600)
    finally:
        c.loop_stop()
    report = {"run_rc": run.returncode, "coverage_messages": len(got), "run_tail": stderr[-1500:]}
    if got:
        p = got[-1]
        report["last_coverage"] = {k: p[k] for k in ("schema", "device_id", "frames", "coverage") if k in p}
        report["coverage_sums_to_1"] = all(abs(sum(m["coverage"].values()) - 1) < 0.01 for m in got)
    if run.returncode == 0:
        report["final_stats"] = json.loads(stdout.strip().splitlines()[-1])
    b = subprocess.run([str(bindir / "roadseg-bench"), "--model", model, "--threads", "1", "--frames", "5",
                        "--warmup", "1", "--rounds", "1", "--frame-size", "120x160", "--json"],
                       capture_output=True, text=True, timeout=600)
    report["bench_rc"] = b.returncode
    if b.returncode == 0:
        r = json.loads(b.stdout)
        report["bench_machine"] = r["machine"]["machine"]
        report["interpreter"] = r["machine"]["interpreter"]
    else:
        report["bench_tail"] = b.stderr[-1500:]
    from edge_runtime.model.segmenter import DeviceSegmenter
    seg = DeviceSegmenter(model, threads=1)
    frame = np.random.default_rng(7).integers(0, 256, (*seg.input_size, 3), np.uint8)
    seg.segment(frame)
    np.save(out / "raw_output.npy", seg.interpreter.get_tensor(seg.interpreter.get_output_details()[0]["index"]))
    report["numpy"] = np.__version__
    report["numpy_path"] = np.__file__
    report["cv2_path"] = cv2.__file__
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    ok = run.returncode == 0 and got and report.get("coverage_sums_to_1") and b.returncode == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
