"""roadseg-run: camera frames -> int8 segmentation at a target FPS ->
coverage summaries over MQTT.

    roadseg-run --model dist/X.tflite --source picamera2 --fps 15 --device-id car1 \
        [--mqtt-host H --mqtt-port P] [--publish-interval 1.0] [--max-frames N] [--duration S] \
        [--preview out.mp4 | --display] [--http 127.0.0.1:8080] [--config roadseg.toml]

Settings come from the command line, then ROADSEG_* environment variables
(e.g. ROADSEG_MQTT_HOST), then a TOML --config file (same names as the long
options, with underscores), then defaults. MQTT credentials only from the
environment or a file. SIGINT/SIGTERM stop cleanly: offline status, queue
flushed within --stop-timeout seconds.
"""
from __future__ import annotations

import json
import logging
import signal
import sys

from edge_runtime.commands import cli


def build_parser():
    p = cli.parser("roadseg-run", __doc__)
    a = p.add_argument
    a("--model", help="dist/NAME.tflite or dist/NAME.onnx (its sidecar NAME.json beside it)")
    a("--source", help="picamera2[:N], csi[:N], v4l2:/dev/videoN, N, rtsp://..., synthetic[:HxW[@FPS]], "
                       "a video file or an image folder")
    a("--fps", type=float, help="target frames per second (0 = as fast as possible); default 15")
    a("--device-id")
    a("--mqtt-host", help="broker host; without it an embedded broker starts on 127.0.0.1")
    a("--mqtt-port", type=int)
    a("--mqtt-protocol", choices=["5", "3.1.1"])
    a("--mqtt-qos", type=int, choices=[0, 1, 2])
    a("--topic-prefix", help="default roadseg/<device-id>")
    a("--max-queued", type=int, help="messages kept while the broker is away (oldest dropped); default 1000")
    a("--tls-ca")
    a("--tls-cert")
    a("--tls-key")
    a("--mqtt-password-file", help="file whose first line is the MQTT password (or ROADSEG_MQTT_PASSWORD)")
    a("--publish-interval", type=float, help="seconds per coverage summary (0 = every frame); default 1")
    a("--stats-interval", type=float, help="seconds between stats messages; default 10")
    a("--stop-timeout", type=float, help="seconds to flush queued messages at stop; default 5")
    a("--threads", type=int, help="interpreter threads (default: all cores)")
    a("--delegate", help="external delegate library, e.g. libedgetpu.so.1; for a .onnx model an ONNX Runtime "
                         "execution provider, e.g. TensorrtExecutionProvider")
    a("--delegate-option", action="append", metavar="KEY=VALUE",
      help="an option for --delegate (repeat), e.g. device=usb:0 for an Edge TPU, trt_fp16_enable=1 for TensorRT")
    a("--max-frames", type=int)
    a("--duration", type=float, help="seconds to run")
    a("--no-realtime", dest="realtime", action="store_const", const=False,
      help="read files as fast as possible instead of at their frame rate")
    a("--loop", action="store_const", const=True, help="restart files at the end")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--preview", help="write the colour overlay with legend and FPS to a video file")
    g.add_argument("--display", action="store_const", const=True, help="show the overlay in a window")
    a("--ha-discovery", action="store_const", const=True, help="publish Home Assistant discovery configs")
    a("--camera-wait", type=float, help="seconds to keep trying a camera that is not there at start, reporting "
                                        "camera_lost meanwhile (0 = fail at once); default 10")
    a("--ha-interval", type=float, help="seconds between Home Assistant sensor updates; default 60")
    a("--snapshot-interval", type=float, help="seconds between retained JPEG snapshots of the overlay on "
                                              "<prefix>/snapshot (0 = only on request, the default: metered links)")
    a("--snapshot-max-kb", type=int, help="largest snapshot in KiB (quality and size are lowered to fit); default 48")
    a("--http", help="serve the device API on HOST:PORT (e.g. 127.0.0.1:8080) beside the loop")
    a("--api-token-file", help="bearer token for the API (or ROADSEG_API_TOKEN)")
    a("--max-pixels", type=int, help="largest upload the API decodes, in pixels; default 12000000")
    a("--max-inflight", type=int, help="uploads the API segments at once (more get 503); default 2")
    a("--heartbeat-file", help="a file touched every second while the loop runs (container health checks)")
    a("--config", help="TOML file of settings")
    a("--json", action="store_true", help="print the final stats as one JSON object")
    a("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def body():
        cli_values = {k: v for k, v in vars(args).items() if k not in ("json", "verbose", "delegate_option")}
        if args.delegate_option:
            cli_values["delegate_options"] = ";".join(args.delegate_option)
        from edge_runtime.commands.settings import load_settings
        from edge_runtime.loop import Runner
        settings = load_settings(cli_values, args.config)
        runner = Runner(settings)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, runner.request_stop)
        summary = runner.run()
        short = {"frames": summary["frames"], "fps": summary["fps"], "dropped_frames": summary["dropped_frames"],
                 "mqtt": summary["mqtt"]}
        print(json.dumps(summary if args.json else short))

    return cli.run("roadseg-run", body)



if __name__ == "__main__":
    sys.exit(main())
