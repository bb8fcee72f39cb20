"""``roadseg-dashboard [--mqtt-host H] [--mqtt-port P] [--device-api URL] [streamlit options]``"""
import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="roadseg-dashboard", description="the roadseg fleet dashboard (Streamlit)")
    p.add_argument("--mqtt-host", default="127.0.0.1")
    p.add_argument("--mqtt-port", type=int, default=1883)
    p.add_argument("--device-api", default="")
    p.add_argument("--address", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8501)
    args = p.parse_args(argv)
    try:
        from streamlit.web import cli as stcli
    except ImportError:
        print("roadseg-dashboard: error: install the dashboard extra: pip install '.[dashboard]'", file=sys.stderr)
        return 2
    os.environ.update(ROADSEG_DASH_MQTT_HOST=args.mqtt_host, ROADSEG_DASH_MQTT_PORT=str(args.mqtt_port),
                      ROADSEG_DASH_DEVICE_API=args.device_api)
    sys.argv = ["streamlit", "run", str(Path(__file__).with_name("app.py")), "--server.headless", "true",
                "--server.address", args.address, "--server.port", str(args.port),
                "--browser.gatherUsageStats", "false"]
    return stcli.main()


if __name__ == "__main__":
    sys.exit(main())
