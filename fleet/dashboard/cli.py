"""roadseg-dashboard: the fleet dashboard (Streamlit) over MQTT.

    roadseg-dashboard [--mqtt-host H] [--mqtt-port P] [--device-api URL] [--http 127.0.0.1:8501]
"""
import os
import sys
from pathlib import Path

from edge_runtime.commands import cli


def main(argv: list[str] | None = None) -> int:
    p = cli.parser("roadseg-dashboard", __doc__)
    p.add_argument("--mqtt-host", default="127.0.0.1", help="broker host")
    p.add_argument("--mqtt-port", type=int, default=1883)
    p.add_argument("--device-api", default="", help="a device API URL for the one-image page")
    p.add_argument("--http", default="127.0.0.1:8501", help="HOST:PORT the dashboard serves on")
    cli.deprecated(p, "--address", "--http HOST:PORT", "address")
    cli.deprecated(p, "--port", "--http HOST:PORT", "port", type=int)
    args = p.parse_args(argv)

    def body():
        from edge_runtime.api import parse_http  # no FastAPI import: the dashboard extra has none
        host, port = parse_http(args.http)
        host = getattr(args, "address", None) or host
        port = getattr(args, "port", None) or port
        try:
            from streamlit.web import cli as stcli
        except ImportError:
            raise ImportError("install the dashboard extra: pip install '.[dashboard]'") from None
        os.environ.update(ROADSEG_DASH_MQTT_HOST=args.mqtt_host, ROADSEG_DASH_MQTT_PORT=str(args.mqtt_port),
                          ROADSEG_DASH_DEVICE_API=args.device_api)
        sys.argv = ["streamlit", "run", str(Path(__file__).with_name("app.py")), "--server.headless", "true",
                    "--server.address", host, "--server.port", str(port), "--browser.gatherUsageStats", "false",
                    "--client.toolbarMode", "minimal"]  # no Deploy button
        return stcli.main()

    return cli.run("roadseg-dashboard", body)


if __name__ == "__main__":
    sys.exit(main())
