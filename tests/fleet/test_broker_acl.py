"""The broker of docs/deploy.md, run as written: passwords, the ACL and TLS
with a CA this test generates, on a real mosquitto. Vehicles log in with the
real publisher, the fleet's readers with their own options; a vehicle cannot
publish as another, the dashboard can read every vehicle and write nothing."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
pytestmark = pytest.mark.skipif(not (MOSQUITTO and shutil.which("mosquitto_passwd") and shutil.which("openssl")),
                                reason="needs mosquitto, mosquitto_passwd and openssl (scripts/test.sh installs them)")
PASSWORDS = {"car1": "car1-secret", "car2": "car2-secret", "dashboard": "dash-secret", "monitor": "monitor-secret",
             "operator": "operator-secret"}


def docs_block(first_line: str) -> str:
    """The fenced block of docs/deploy.md whose first line is ``first_line``."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.DOTALL):
        if block.splitlines()[0].strip() == first_line:
            return block
    raise AssertionError(f"docs/deploy.md has no block starting {first_line!r}")


def make_ca(d: Path) -> None:
    """A CA and a broker certificate for 127.0.0.1 signed by it (what deploy.md's openssl lines do)."""
    def ssl(*a):
        subprocess.run(["openssl", *a], check=True, capture_output=True, cwd=d)
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.crt")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "broker.key", "-out", "broker.csr")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ssl("x509", "-req", "-in", "broker.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-out", "broker.crt", "-extfile", "san.ext")


@pytest.fixture
def deploy_broker(tmp_path):
    """mosquitto with deploy.md's roadseg.conf and roadseg.acl; /etc/mosquitto/ -> tmp_path, 8883 -> a free port."""
    with running_deploy_broker(tmp_path) as b:
        yield b


@contextlib.contextmanager
def running_deploy_broker(tmp_path, wrapper: list[str] = ()):
    """:func:`deploy_broker` as a context manager: ``wrapper`` goes before the mosquitto command
    (``prlimit --as=...``: a memory ceiling); the dict it yields also has ``pid`` (mosquitto's)."""
    from edge_runtime.io.broker import free_port
    etc = tmp_path / "etc"
    (etc / "certs").mkdir(parents=True)
    make_ca(etc / "certs")
    conf = docs_block("# /etc/mosquitto/conf.d/roadseg.conf")
    acl = docs_block("# /etc/mosquitto/roadseg.acl")
    port = free_port()
    assert "\nlistener 8883\n" in conf
    conf = conf.replace("/etc/mosquitto/", f"{etc}/").replace("\nlistener 8883\n", f"\nlistener {port} 127.0.0.1\n")
    if os.geteuid() == 0:  # as root, mosquitto drops to user "mosquitto", who cannot read the test's 0700 folder
        conf = "user root\n" + conf
    (etc / "roadseg.conf").write_text(conf)
    (etc / "roadseg.acl").write_text(acl)
    pw = etc / "roadseg.passwd"
    for i, (user, password) in enumerate(PASSWORDS.items()):
        subprocess.run(["mosquitto_passwd", *(["-c"] if i == 0 else []), "-b", str(pw), user, password], check=True)
    proc = subprocess.Popen([*wrapper, MOSQUITTO, "-c", str(etc / "roadseg.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    started = threading.Event()

    def watch():  # mosquitto logs to stderr: ready once it says it is running
        for line in proc.stderr:
            if " running" in line:
                started.set()
    threading.Thread(target=watch, daemon=True).start()
    assert started.wait(20) and proc.poll() is None, "mosquitto did not start with deploy.md's configuration"
    try:
        yield {"port": port, "ca": str(etc / "certs" / "ca.crt"), "pid": proc.pid, "process": proc}
    finally:
        proc.terminate()
        proc.wait(10)


def _settings(b, user, **kw):
    from fleet.broker import BrokerSettings
    return BrokerSettings(port=b["port"], username=user, password=PASSWORDS.get(user, "wrong"), tls_ca=b["ca"], **kw)


def publish_rc(b, user: str, topic: str, body: str, retain: bool = False) -> str:
    """Publish once at QoS 1 over MQTT 5 as ``user``: "refused" when the broker's PUBACK says
    Not authorized, "accepted" for a success code (also "No matching subscribers")."""
    import paho.mqtt.client as mqtt
    got, done = [], threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=b["ca"])
    c.username_pw_set(user, PASSWORDS[user])
    c.on_publish = lambda cl, u, mid, rc, props: (got.append(rc), done.set())
    c.connect("127.0.0.1", b["port"])
    c.loop_start()
    try:
        c.publish(topic, body, qos=1, retain=retain)
        assert done.wait(10), "no PUBACK"
        rc = got[0]
        return "refused" if rc.is_failure and str(rc) == "Not authorized" else "accepted" if not rc.is_failure else str(rc)
    finally:
        c.loop_stop()
        c.disconnect()


def test_a_vehicle_cannot_publish_as_another_and_the_dashboard_only_reads(deploy_broker):
    from edge_runtime.contract import payloads
    from edge_runtime.io.mqtt import MqttPublisher, MqttSettings
    from fleet.dashboard.state import Fleet
    b = deploy_broker
    # probes logged in as a user whose real client runs below would take its session over (the client id
    # is the user name): they come first
    forged = json.dumps(payloads.status("offline", "car1", reason="lost", api="http://10.6.6.6:8080"))
    assert publish_rc(b, "dashboard", "roadseg/car1/status", forged) == "refused"
    assert publish_rc(b, "dashboard", "roadseg/dashboard/status", forged) == "refused"
    _, cfg = payloads.ha_sensor_config("car1", "sky", "roadseg/car1/ha", "roadseg/car1/status", "m")
    assert publish_rc(b, "car1", "homeassistant/sensor/roadseg_car1_sky/config", json.dumps(cfg)) == "accepted"
    assert publish_rc(b, "car1", "homeassistant/sensor/roadseg_car2_sky/config", "{}") == "refused"
    fleet = Fleet(_settings(b, "dashboard"))
    cars = {}
    try:
        assert fleet.subscriber.wait_for(lambda: fleet.connected, 20), fleet.subscriber.error
        for car in ("car1", "car2"):  # the real vehicle publisher, logged in over TLS as itself
            cars[car] = MqttPublisher(MqttSettings(mqtt_port=b["port"], device_id=car, tls_ca=b["ca"]),
                                      credentials=(car, PASSWORDS[car]))
            cars[car].start({"model": {"name": "student-int8"}, "api": f"http://10.0.0.{len(cars)}:8080"})
        assert fleet.wait_for(lambda f: {v.device_id for v in f.view() if v.status} == {"car1", "car2"}, 20)
        cars.pop("car2").stop(5)  # its password is the attacker's below
        assert publish_rc(b, "car2", "roadseg/car1/status", forged) == "refused"  # car2 posing as car1
        assert publish_rc(b, "car2", "roadseg/car2/coverage", "{}") == "accepted"  # its own topic: accepted
        # the accepted (invalid) car2 coverage reached the dashboard after the refused forgery: car1 is untouched
        assert fleet.wait_for(lambda f: f.intake.dropped_total >= 1, 10)
        car1 = next(v for v in fleet.view() if v.device_id == "car1")
        assert car1.status.state == "online" and car1.status.api == "http://10.0.0.1:8080"
    finally:
        for p in cars.values():
            p.stop(1)
        fleet.close()


def test_wrong_or_missing_credentials_are_refused_and_said_in_one_line(deploy_broker, tmp_path):
    from fleet.dashboard.state import Fleet
    b = deploy_broker
    fleet = Fleet(_settings(b, "intruder"))
    try:
        assert fleet.subscriber.wait_for(lambda: fleet.subscriber.refused, 20)
        assert "refused the login" in fleet.subscriber.error and not fleet.connected
    finally:
        fleet.close()
    env = dict(os.environ, ROADSEG_MQTT_PASSWORD="not-the-password", PYTHONPATH=str(ROOT))
    args = [sys.executable, "-m", "fleet.monitor", "--mqtt-port", str(b["port"]), "--tls-ca", b["ca"],
            "--mqtt-username", "dashboard", "--connect-timeout", "20", "--duration", "20"]
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 4 and "refused the login" in r.stderr and "not-the-password" not in r.stderr + r.stdout
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    # the password from a file, over TLS: the monitor reads car1's retained status
    pw = tmp_path / "dash.pw"
    pw.write_text(PASSWORDS["dashboard"] + "\n")
    env.pop("ROADSEG_MQTT_PASSWORD")
    status = '{"state": "online", "ts": "2026-11-25T10:00:00.000Z", "device_id": "car1", "reason": "test"}'
    assert publish_rc(b, "car1", "roadseg/car1/status", status, retain=True) == "accepted"
    proc = subprocess.Popen(args[:-2] + ["--mqtt-password-file", str(pw), "--duration", "60"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # blocks until the first line: the retained status
        assert "car1 status: online" in line and "reason test" in line, line
    finally:
        proc.terminate()
        proc.wait(10)
    # without TLS the listener does not answer MQTT at all
    r = subprocess.run([sys.executable, "-m", "fleet.monitor", "--mqtt-port", str(b["port"]), "--mqtt-username",
                        "dashboard", "--connect-timeout", "3", "--duration", "1"],
                       env=dict(env, ROADSEG_MQTT_PASSWORD=PASSWORDS["dashboard"]), capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 4 and "Traceback" not in r.stderr


def test_only_the_operator_announces_releases_and_a_vehicle_reports_only_its_own_model_state(deploy_broker):
    """Issue 29: a vehicle (or the dashboard) forging an announcement, fleet-wide or another vehicle's, or
    another vehicle's model state is refused by the deploy ACL; the operator (roadseg-rollout) announces."""
    from edge_runtime.contract import payloads
    from edge_runtime.contract import release as contract
    b = deploy_broker
    ann = json.dumps(contract.announcement(4, "releases/4/student.tflite", "https://releases.example/fleet/"))
    for user, topic in [("car2", "roadseg/fleet/release"), ("car2", "roadseg/car1/release"),
                        ("car2", "roadseg/car2/release"), ("dashboard", "roadseg/fleet/release"),
                        ("monitor", "roadseg/car1/release")]:
        assert publish_rc(b, user, topic, ann, retain=True) == "refused", (user, topic)
    state = {d: json.dumps(payloads.model_state(d, "succeeded", {"version": 4})) for d in ("car1", "car2")}
    assert publish_rc(b, "car2", "roadseg/car1/model", state["car1"], retain=True) == "refused"
    assert publish_rc(b, "car2", "roadseg/car2/model", state["car2"], retain=True) == "accepted"
    assert publish_rc(b, "operator", "roadseg/car1/model", state["car1"]) == "refused"
    assert publish_rc(b, "operator", "roadseg/fleet/release", ann, retain=True) == "accepted"
    assert publish_rc(b, "operator", "roadseg/car1/release", ann, retain=True) == "accepted"
