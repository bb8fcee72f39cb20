r"""roadseg-run: camera frames -> int8 segmentation at a target FPS ->
coverage summaries over MQTT.

    roadseg-run [--model dist/X.tflite] --source picamera2 --fps 15 --device-id car1 \
        [--mqtt-host H --mqtt-port P] [--publish-interval 1.0] [--max-frames N] [--duration S] \
        [--preview out.mp4 | --display] [--http 127.0.0.1:8080] [--config roadseg.toml]

Settings come from the command line, then ROADSEG_* environment variables
(e.g. ROADSEG_MQTT_HOST), then a TOML --config file (same names as the long
options, with underscores), then defaults. MQTT credentials only from the
environment or a file. SIGINT/SIGTERM stop cleanly: offline status, queue
flushed within --stop-timeout seconds.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import socket
import sys
import threading

from edge_runtime.commands import cli

log = logging.getLogger("roadseg.run")


# -- the command line (argparse only: nothing heavy is imported before it parses) ----------
def _model_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", help=cli.MODEL_HELP)
    g.add_argument("--threads", type=int, help="interpreter threads (default: all cores)")
    g.add_argument("--size", metavar="HxW", help="input size for a model whose input height and width are "
                                                "dynamic (default: its sidecar's); refused for a fixed-size model "
                                                "of another size")
    g.add_argument("--delegate", help="external delegate library, e.g. libedgetpu.so.1; for a .onnx model an ONNX "
                                      "Runtime execution provider, e.g. TensorrtExecutionProvider")
    g.add_argument("--delegate-option", action="append", metavar="KEY=VALUE",
                   help="an option for --delegate (repeat), e.g. device=usb:0 for an Edge TPU, trt_fp16_enable=1 "
                        "for TensorRT")


def _source_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("source and pace")
    g.add_argument("--source", help="picamera2[:N], csi[:N], v4l2:/dev/videoN, N, rtsp://..., "
                                    "synthetic[:HxW[@FPS]], a video file or an image folder; default synthetic")
    g.add_argument("--fps", type=float, help="target frames per second (0 = as fast as possible); default 15")
    g.add_argument("--no-realtime", dest="realtime", action="store_const", const=False,
                   help="read files as fast as possible, every frame, instead of at their frame rate "
                        "(unpaced unless --fps is given)")
    g.add_argument("--loop", action="store_const", const=True, help="restart files at the end")
    g.add_argument("--camera-wait", type=float, help="seconds to keep trying a camera that is not there at start, "
                                                     "reporting camera_lost meanwhile (0 = fail at once); default 10")
    g.add_argument("--max-frames", type=int, help="stop after this many segmented frames")
    g.add_argument("--duration", type=float, help="seconds to run")


def _mqtt_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("MQTT")
    g.add_argument("--device-id", help="names the topics roadseg/<device-id>/...; default: the host name, made "
                                       "unique per machine when it is a factory default (raspberrypi -> "
                                       "raspberrypi-3fa2c1)")
    g.add_argument("--mqtt-host", help="broker host; without it an embedded broker starts on 127.0.0.1 "
                                       "(on --mqtt-port, refused if that port is taken)")
    g.add_argument("--mqtt-port", type=int, help="broker TCP port; default 1883")
    g.add_argument("--mqtt-protocol", choices=["5", "3.1.1"], help="MQTT protocol version; default 5")
    g.add_argument("--mqtt-qos", type=int, choices=[0, 1, 2], help="QoS of coverage and stats messages; default 1")
    g.add_argument("--topic-prefix", help="default roadseg/<device-id>")
    g.add_argument("--max-queued", type=int, help="messages kept while the broker is away (oldest dropped); "
                                                  "default 1000")
    g.add_argument("--tls-ca", help="CA certificate (PEM) that signed the broker's: turns TLS on")
    g.add_argument("--tls-cert", help="client certificate (PEM) for brokers that require one")
    g.add_argument("--tls-key", help="the client certificate's private key (PEM)")
    g.add_argument("--mqtt-password-file", help="file whose first line is the MQTT password "
                                                "(or ROADSEG_MQTT_PASSWORD)")
    g.add_argument("--publish-interval", type=float, help="seconds per coverage summary (0 = every frame); "
                                                          "default 1")
    g.add_argument("--stats-interval", type=float, help="seconds between stats messages; default 10")
    g.add_argument("--stop-timeout", type=float, help="seconds to flush queued messages at stop; default 5")
    g.add_argument("--ha-discovery", action="store_const", const=True,
                   help="publish Home Assistant discovery configs")
    g.add_argument("--ha-interval", type=float, help="seconds between Home Assistant sensor updates; default 60")
    g.add_argument("--snapshot-interval", type=float,
                   help="seconds between retained JPEG snapshots of the overlay on <prefix>/snapshot "
                        "(0 = only on request, the default: metered links)")
    g.add_argument("--snapshot-max-kb", type=int, help="largest snapshot in KiB (quality and size are lowered to "
                                                       "fit); default 48")
    g.add_argument("--snapshot-min-interval", type=float,
                   help="seconds between snapshots served on request; requests in between are counted "
                        "(stats mqtt.requests_limited), not served; default 10")
    g.add_argument("--mqtt-max-packet-kb", type=int,
                   help="largest MQTT packet in KiB the broker accepts (mosquitto's message_size_limit, "
                        "max_packet_size): larger messages are counted, not sent; an MQTT 5 broker's own "
                        "Maximum Packet Size applies when smaller; default 128")
    g.add_argument("--mqtt-client-id", help="MQTT client id; default roadseg-<device-id>-<installation id kept in "
                                            "--state-dir>")
    g.add_argument("--mqtt-keepalive", type=int, help="seconds between MQTT keepalive pings; default 15")
    g.add_argument("--queue-max-mb", type=float, help="largest offline queue in MiB (oldest dropped beyond); "
                                                      "default 32")
    g.add_argument("--state-dir", help="where the offline queue (kept over a restart or power cut) and the "
                                       "installation id live; default $STATE_DIRECTORY, else "
                                       "$XDG_STATE_HOME/roadseg or ~/.local/state/roadseg")


def _view_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("watching it")
    views = g.add_mutually_exclusive_group()
    views.add_argument("--preview", help="write the colour overlay with legend and FPS to a video file (at the rate "
                                         "frames were read; on a full disk finished with what fits)")
    views.add_argument("--display", action="store_const", const=True,
                       help="show the overlay in a window (needs an OpenCV with GUI, not the headless one)")
    g.add_argument("--overlay-filter", choices=["linear", "point"],
                   help="how the class map is brought to the frame's size in the preview, window and snapshots: "
                        "linear (smooth boundaries, the default) or point (nearest, cheaper, blocky)")
    g.add_argument("--http", help="serve the device API on HOST:PORT (e.g. 127.0.0.1:8080) beside the loop")
    g.add_argument("--api-token-file", help="bearer token for the API (or ROADSEG_API_TOKEN)")
    g.add_argument("--max-upload-mb", type=float, help="largest upload the API accepts, in MiB, refused before it "
                                                      "is read (as roadseg-serve's); default 10")
    g.add_argument("--max-pixels", type=int, help="largest upload the API decodes, in pixels; default 12000000")
    g.add_argument("--max-inflight", type=int, help="uploads the API segments at once (more get 503); default 2")
    g.add_argument("--heartbeat-file", help="a file touched every second while frames arrive, or while the camera "
                                            "is reported lost and being reopened (container health checks)")
    g.add_argument("--capture-timeout", type=float,
                   help="seconds a camera read may take: a capture that does not return within it is abandoned, "
                        "reported (camera_lost) and the camera reopened; default 5")


def _keep_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("keeping frames for the next model (off by default: the frames hold faces and number "
                             "plates)")
    g.add_argument("--keep-frames", metavar="DIR", help="keep the frames the model is least sure of here (full-size "
                                                        "JPEG + JSON record each)")
    g.add_argument("--keep-max-mb", type=float, help="the kept frames' size limit in MiB (lower-scoring frames make "
                                                    "room); default 256")
    g.add_argument("--keep-per-hour", type=int, help="frames kept per hour at most; default 30")
    g.add_argument("--upload-url", help="push kept frames to this WebDAV URL (PUT <url>/<device-id>/<file>, HTTP "
                                        "Basic as the device id)")
    g.add_argument("--upload-presign", metavar="URL", help="push kept frames to S3 through this presigning service "
                                                           "(python -m fleet.presign)")
    g.add_argument("--upload-token-file", help="file whose first line is the upload password / token "
                                               "(or ROADSEG_UPLOAD_TOKEN)")
    g.add_argument("--upload-mb-per-day", type=float, help="bytes pushed in any 24 hours at most (a sliding window on the boot clock), in MiB; default 50")


def _update_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model updates (signed releases over the fleet; off without --update-repo)")
    g.add_argument("--update-repo", metavar="URL", help="the release repository's base URL (TUF metadata/ and "
                                                        "targets/); several mirrors comma-separated")
    g.add_argument("--trust-root", help="the TUF root metadata this vehicle trusts (set at install); required with "
                                        "--update-repo")
    g.add_argument("--probation", type=float, help="seconds a new model runs on probation (FPS, errors, agreement "
                                                   "with the previous model) before it is committed; default 60")
    g.add_argument("--probation-agreement", type=float,
                   help="share of pixels (0..1) on which a new model must agree with the previous one on "
                        "probation; default 0.6")
    g.add_argument("--update-max-mb", type=float, help="the most one release may download, in MiB; default 64")
    g.add_argument("--update-timeout", type=float, help="seconds any one release file may take to download; "
                                                        "default 300")


def build_parser() -> argparse.ArgumentParser:
    """roadseg-run's parser (every flag's default is None: unset flags leave the
    environment's, the config file's or the built-in value)."""
    p = cli.parser("roadseg-run", __doc__)
    _model_flags(p)
    _source_flags(p)
    _mqtt_flags(p)
    _view_flags(p)
    _update_flags(p)
    _keep_flags(p)
    p.add_argument("--config", help="TOML file of settings (names as the long options, with underscores)")
    p.add_argument("--json", action="store_true", help="print the final stats as one JSON object")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages too")
    return p


def cli_settings(args: argparse.Namespace) -> dict:
    """The settings the command line gives (None: not given), as RunSettings names.
    ``--no-realtime`` without ``--fps`` means unpaced (fps 0)."""
    values = {k: v for k, v in vars(args).items() if k not in ("json", "verbose", "delegate_option", "config")}
    if args.delegate_option:
        values["delegate_options"] = ";".join(args.delegate_option)
    if args.realtime is False and args.fps is None:
        values["fps"] = 0.0
    return values


# -- the composition: the loop with the optional services around it -------------------------
class Vehicle:
    """roadseg-run's pieces around the run loop (edge_runtime.loop.Runner), started
    in this order so a failure leaves nothing running: the model, the window /
    preview checks, MQTT credentials, the device API's port (``--http``, with its
    own interpreter for uploads), the source, the embedded broker (no
    ``--mqtt-host``), the MQTT publisher, Home Assistant, snapshots; stopped in
    reverse. ``segmenter``, ``source`` and ``publisher`` replace the built ones
    (tests, soak runs); a given source or publisher is not stopped here.

    :meth:`run` returns the final stats payload; it raises cli.RuntimeFailure
    (exit 4) for a busy port, a camera that never opens or a window that cannot
    be shown, ValueError/FileNotFoundError (exit 2) for bad input.
    """

    def __init__(self, settings, segmenter=None, source=None, publisher=None):
        self.s = settings
        self._given = {"segmenter": segmenter, "source": source, "publisher": publisher}
        self.runner = None
        self.ready = threading.Event()  # set once everything is composed and the loop starts
        self.broker = self.publisher = self.ha = self.live = self.snapshots = self.preview = None
        self.http_server = self.api_url = None
        self._stop = False

    def request_stop(self, *_) -> None:
        """Stop the loop after the current frame (a signal handler)."""
        self._stop = True
        if self.runner is not None:
            self.runner.request_stop()

    def run(self) -> dict:
        """Compose, run the loop until it stops, then stop every service."""
        with contextlib.ExitStack() as stack:
            self.runner = self._compose(stack)
            if self._stop:
                self.runner.request_stop()
            self.ready.set()
            return self.runner.run()

    def _compose(self, stack: contextlib.ExitStack):
        from edge_runtime.io.views import Snapshots
        from edge_runtime.loop import Runner
        views = self._local_views(stack)  # a headless OpenCV fails here, before the model loads
        updates = None
        if self.s.update_repo and not self._given["segmenter"]:  # issue 29: start on the committed release
            from edge_runtime.update.compose import VehicleUpdates
            updates = VehicleUpdates(self.s)
        seg = self._given["segmenter"] or (updates and updates.segmenter()) or self._segmenter(self.s.threads)
        if self.s.keep_frames:  # the flywheel's vehicle half (edge_runtime.flywheel), off by default
            from edge_runtime.flywheel import compose
            views.append(compose(self.s, seg, stack))
        creds = None if self._given["publisher"] else _credentials(self.s)
        if self.s.http:  # the port first: a busy port must not leave a camera open
            views.insert(0, self._start_http(stack))
        source = self._given["source"] or self._open_source(stack, seg)
        if self.preview is not None:
            self.preview.source = source
        self.publisher = self._given["publisher"] or self._mqtt(stack, creds)
        hooks = []
        if self.s.ha_discovery and hasattr(self.publisher, "on_connected"):
            from edge_runtime.io.homeassistant import HomeAssistant
            self.ha = HomeAssistant(self.publisher, seg.describe()["name"], self.s.ha_interval)
            hooks.append(self.ha.update)
        self.snapshots = Snapshots(self.publisher, self.s.snapshot_interval, self.s.snapshot_max_kb,
                                   self.s.snapshot_min_interval, filter=self.s.overlay_filter)
        runner = Runner(self.s, seg, source, self.publisher, [*views, self.snapshots], hooks)
        if self.live is not None:
            self.live.stats_fn = runner.stats_payload
            self.live.liveness_fn = runner.liveness  # /healthz: the loop's liveness, measured on frames
            # /v1/stats reports the loop's interpreter (not the uploads'), the one running since the last swap
            self.live.describe_fn = lambda: dict(runner.seg.describe(), **(
                {"release": runner.seg.release} if getattr(runner.seg, "release", None) is not None else {}))
        status = {"model": runner.model_info(), "source": source.name, "target_fps": runner.target_fps}
        if self.s.http:
            status["api"] = self.api_url
        self.publisher.start(status)
        if updates is not None:  # announcements in, model state out, swaps through the loop
            updates.attach(runner, self.publisher, stack)
            runner.fault_sources.append(updates)  # a state dir that refuses releases: a fault in status
        return runner

    def _open_source(self, stack: contextlib.ExitStack, seg):
        """The source named by --source, asking cameras for the model's input size;
        a camera not there yet is waited for (--camera-wait), not fatal."""
        from edge_runtime.io.sources import open_source
        source = open_source(self.s.source, seg.input_size, realtime=self.s.realtime, loop=self.s.loop,
                             wait=self.s.camera_wait == 0)
        stack.callback(source.stop)
        return source

    def _segmenter(self, threads: int | None):
        from edge_runtime.model.interpreter import parse_delegate_options
        from edge_runtime.model.segmenter import DeviceSegmenter
        return DeviceSegmenter(self.s.model, threads, self.s.delegate, parse_delegate_options(self.s.delegate_options),
                               size=self.s.input_size())

    def _local_views(self, stack: contextlib.ExitStack) -> list:
        from edge_runtime.io.views import Display, Preview
        views = []
        if self.s.display:
            views.append(stack.enter_context(contextlib.closing(Display(self.s.overlay_filter))))
        if self.s.preview:  # written at the rate frames are read: told the source once it is open (_compose)
            self.preview = Preview(self.s.preview, self.s.fps, self.s.realtime, self.s.overlay_filter)
            views.append(stack.enter_context(contextlib.closing(self.preview)))
        return views

    def _start_http(self, stack: contextlib.ExitStack):
        """The device API beside the loop; uploads get their own interpreter
        (one thread) so they never race the live loop's. Returns its live view."""
        try:
            from edge_runtime.api import LiveState, create_app, load_token, parse_http, serve_in_thread
        except ImportError as e:
            raise RuntimeError(f"--http needs the api extra: pip install \"roadseg[api]\" ({e})") from None
        host, port = parse_http(self.s.http)
        self.live = LiveState()
        app = create_app(self._segmenter(1), self.live, load_token(self.s.api_token_file),
                         max_upload=int(self.s.max_upload_mb * 1024 * 1024), max_pixels=self.s.max_pixels,
                         max_inflight=self.s.max_inflight, device_id=self.s.device_id)
        self.http_server = serve_in_thread(app, host, port)
        stack.callback(setattr, self.http_server, "should_exit", True)
        shown = socket.gethostname() if host in ("0.0.0.0", "::") else host
        self.api_url = f"http://{f'[{shown}]' if ':' in shown else shown}:{port}"  # IPv6 literals in brackets
        return self.live

    def _mqtt(self, stack: contextlib.ExitStack, creds: tuple[str | None, str | None]):
        """The MQTT publisher (stopped, flushing its queue, before the broker stops),
        to --mqtt-host or to an embedded broker on 127.0.0.1:--mqtt-port."""
        from edge_runtime.io.mqtt import MqttPublisher
        settings = self.s
        if not self.s.mqtt_host:
            self.broker = _embedded_broker(self.s.mqtt_port)
            stack.callback(self.broker.stop)
            # in-process broker: nothing waits for a broker, so nothing is kept on disk either
            local_id = self.s.mqtt_client_id or f"roadseg-{self.s.device_id}"  # alone on its own broker
            settings = self.s.model_copy(update={"mqtt_host": "127.0.0.1", "mqtt_port": self.broker.port,
                                                 "mqtt_protocol": "3.1.1", "state_dir": None,
                                                 "mqtt_client_id": local_id})
        pub = MqttPublisher(settings, creds)
        stack.callback(pub.stop, self.s.stop_timeout)
        return pub


def _credentials(s) -> tuple[str | None, str | None]:
    """(username, password) from the environment or --mqtt-password-file: first,
    so nothing is started when they are missing."""
    from edge_runtime.io.credentials import credentials_from_env
    return credentials_from_env(s.mqtt_password_file)


def _embedded_broker(port: int):
    """An embedded broker on 127.0.0.1:``port``; refuses (cli.RuntimeFailure,
    one line) when the port is taken rather than moving elsewhere, since the
    subscribers expect it there."""
    from edge_runtime.io.broker import EmbeddedBroker
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a broker binds: TIME_WAIT is no conflict
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise cli.RuntimeFailure(
                f"cannot start the embedded MQTT broker: port {port} on 127.0.0.1 is taken (another broker, e.g. "
                f"apt's mosquitto?); publish to it with --mqtt-host 127.0.0.1, or give the embedded broker a free "
                f"port with --mqtt-port N") from None
    return EmbeddedBroker("127.0.0.1", port).start()


def main(argv: list[str] | None = None) -> int:
    """roadseg-run's entry point: the exit code (cli.EXIT_CODES)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def body():
        from edge_runtime.commands.settings import load_settings
        settings = load_settings(cli_settings(args), args.config, default_model=cli.shipped_model)
        vehicle = Vehicle(settings)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, vehicle.request_stop)
        summary = vehicle.run()
        short = {"frames": summary["frames"], "fps": summary["fps"], "dropped_frames": summary["dropped_frames"],
                 "mqtt": summary["mqtt"]}
        try:  # the run's own result does not hang on its last line: a full disk under stdout is said, not fatal
            print(json.dumps(summary if args.json else short), flush=True)
        except OSError as e:
            log.warning("cannot write the run's summary to stdout (%s): the run itself ended normally",
                        e.strerror or e)
        problem = vehicle.publisher.delivery_problem() if settings.mqtt_host else None
        if problem:  # a broker was configured and got nothing: not a success
            raise cli.RuntimeFailure(problem)

    return cli.run("roadseg-run", body)


if __name__ == "__main__":
    sys.exit(main())
