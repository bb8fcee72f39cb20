"""roadseg-dashboard: the fleet dashboard (Streamlit) over MQTT.

    roadseg-dashboard [--mqtt-host H] [--mqtt-port P] [--mqtt-username dashboard] [--tls-ca ca.crt]
                      [--vehicle car1 --vehicle car2] [--device-api URL] [--http 127.0.0.1:8501]
                      [--password-file FILE | --behind-proxy] [--max-sessions 8]

The password comes from ROADSEG_MQTT_PASSWORD or --mqtt-password-file, never
the command line. --vehicle lists the ids the dashboard always keeps (and
alerts about when they send nothing), however many others appear.

The page has no login unless --password-file names one: it then asks for it
(fleet.dashboard.access). An --http address other than loopback is refused
without a login: --password-file, or --behind-proxy where a reverse proxy in
front asks for one (docs/deploy.md). At most --max-sessions browser sessions
see the page at once, each with a bounded rate of page runs.
"""
import ipaddress
import os
import re
import sys
from pathlib import Path

from edge_runtime.commands import cli


def build_parser():
    """The dashboard's options: the broker's as :func:`fleet.broker.add_arguments`, then its own."""
    from fleet import broker
    p = cli.parser("roadseg-dashboard", __doc__)
    broker.add_arguments(p)
    p.add_argument("--vehicle", action="append", default=[], metavar="ID",
                   help="a vehicle id always kept and shown (repeat); alerts while it sends nothing")
    p.add_argument("--device-api", default="", help="http(s)://HOST:PORT of a device API for the one-image page "
                                                    "and every live-view link (ROADSEG_API_TOKEN is sent there)")
    p.add_argument("--http", default="127.0.0.1:8501", help="HOST:PORT the dashboard serves on (beyond loopback: "
                                                            "only with --password-file or --behind-proxy)")
    p.add_argument("--password-file", help="file whose first line is the password the page asks for (a login)")
    p.add_argument("--behind-proxy", action="store_true",
                   help="a reverse proxy in front asks for a login (docs/deploy.md): listen beyond loopback "
                        "without one")
    p.add_argument("--max-sessions", type=int, default=None, metavar="N",
                   help="browser sessions served at once (default 8); one more sees 'too many viewers'")
    cli.deprecated(p, "--address", "--http HOST:PORT", "address")
    cli.deprecated(p, "--port", "--http HOST:PORT", "port", type=int)
    return p


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an --http host: an IP address or a name) only ever means this machine:
    ``localhost`` or a loopback address (127.0.0.0/8, ::1). Any other name may resolve elsewhere."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    """``roadseg-dashboard``: checks its options (exit 2, one line), then runs Streamlit on ``--http``."""
    args = build_parser().parse_args(argv)

    def body():
        from edge_runtime.api import (
            parse_http,  # no FastAPI import: the dashboard extra has none
        )
        from edge_runtime.contract.payloads import API_URL_PATTERN, DEVICE_ID_PATTERN
        from fleet import broker
        settings = broker.from_args(args)
        bad = [v for v in args.vehicle if not re.fullmatch(DEVICE_ID_PATTERN, v)]
        if bad:
            raise ValueError(f"--vehicle {bad[0]!r}: use 1 to 64 letters, digits, _ or -")
        api = args.device_api.rstrip("/")
        if api and not re.fullmatch(API_URL_PATTERN, api):
            raise ValueError(f"--device-api {args.device_api!r}: use http(s)://HOST[:PORT]")
        host, port = parse_http(args.http)
        host = getattr(args, "address", None) or host
        port = getattr(args, "port", None) or port
        from fleet.dashboard.access import DEFAULT_MAX_SESSIONS, read_password
        if args.password_file:
            read_password(args.password_file)  # size first, regular file only; the page reads it again
        elif not (args.behind_proxy or is_loopback(host)):
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            raise ValueError(f"--http {where} serves beyond this machine without a login: give --password-file "
                             f"FILE, or --behind-proxy with an authenticating reverse proxy in front, or 127.0.0.1")
        sessions = DEFAULT_MAX_SESSIONS if args.max_sessions is None else args.max_sessions
        if not 0 < sessions <= 10_000:
            raise ValueError(f"--max-sessions {sessions}: use 1 to 10000")
        try:
            from streamlit.web import cli as stcli
        except ImportError:
            raise ImportError("install the dashboard extra: pip install '.[dashboard]'") from None
        os.environ.update(broker.to_env(settings, args.mqtt_password_file), ROADSEG_DASH_DEVICE_API=api,
                          ROADSEG_DASH_VEHICLES=",".join(args.vehicle), ROADSEG_DASH_MAX_SESSIONS=str(sessions))
        os.environ.pop("ROADSEG_DASH_PASSWORD_FILE", None)
        if args.password_file:
            os.environ["ROADSEG_DASH_PASSWORD_FILE"] = os.path.abspath(args.password_file)
        sys.argv = ["streamlit", "run", str(Path(__file__).with_name("app.py")), "--server.headless", "true",
                    "--server.address", host, "--server.port", str(port), "--browser.gatherUsageStats", "false",
                    "--client.toolbarMode", "minimal",  # no Deploy button
                    "--server.maxUploadSize", "10",  # MB per file (Streamlit's 200): the device API's own default
                    "--client.showErrorDetails", "none"]  # no message, type or trace ("false" still shows traces)
        return stcli.main()

    return cli.run("roadseg-dashboard", body)


if __name__ == "__main__":
    sys.exit(main())
