"""Test helpers shared by the suites: a broker the tests can stop and restart (with a password file,
an ACL, TLS with a CA made here, a message size limit), a real MQTT subscriber."""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path


# --- MQTT broker: real mosquitto on a free loopback port ---------------------------

def make_ca(folder, name: str = "broker") -> dict[str, Path]:
    """A fresh CA and a server certificate it signed for 127.0.0.1 / localhost,
    made with the openssl command: ``{"ca", "cert", "key"}`` PEM paths in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / f"{name}-ca.pem", folder / f"{name}-ca.key"
    cert, key, csr, ext = (folder / f"{name}.pem", folder / f"{name}.key", folder / f"{name}.csr",
                           folder / f"{name}.ext")
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def ssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
        "-subj", f"/CN={name} test CA")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    ssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "2",
        "-extfile", ext)
    return {"ca": ca, "cert": cert, "key": key}


class Broker:
    """A broker the tests can stop and restart on the same port: mosquitto
    (edge_runtime.io.broker), or the embedded amqtt where mosquitto is missing.

    With mosquitto only (RuntimeError otherwise): ``users`` ({name: password},
    written with mosquitto_passwd; anonymous clients are then refused), ``acl``
    (the text of an acl_file), ``tls`` (the listener speaks TLS with a
    certificate from :func:`make_ca`; ``self.tls["ca"]`` is the CA for
    clients), ``message_size_limit`` (bytes), ``options`` (more config lines)."""

    def __init__(self, workdir, persistence: bool = True, *, users: dict[str, str] | None = None,
                 acl: str | None = None, tls: bool = False, message_size_limit: int | None = None,
                 options: list[str] | tuple = ()):
        from edge_runtime.io.broker import free_port, mosquitto_path
        self.persistence = persistence
        self.kind = "mosquitto" if mosquitto_path() else "amqtt"
        self.port = free_port()
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = None
        self.embedded = None
        self.tls: dict[str, Path] | None = None
        self.listener_options: list[str] = []
        self.options = list(options)
        if message_size_limit is not None:
            self.options.append(f"message_size_limit {message_size_limit}")
        if users:
            self.options += ["allow_anonymous false", f"password_file {self._password_file(users)}"]
        if acl is not None:
            (self.workdir / "acl").write_text(acl)
            self.options.append(f"acl_file {self.workdir / 'acl'}")
        if tls:
            self.tls = make_ca(self.workdir / "tls")
            self.listener_options += [f"cafile {self.tls['ca']}", f"certfile {self.tls['cert']}",
                                      f"keyfile {self.tls['key']}"]
        if (self.options or self.listener_options) and self.kind != "mosquitto":
            raise RuntimeError("this broker configuration needs mosquitto (apt install mosquitto)")

    def _password_file(self, users: dict[str, str]) -> Path:
        path = self.workdir / "passwords"
        path.write_text("")
        exe = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        for name, password in users.items():
            subprocess.run([exe, "-b", str(path), name, password], check=True, capture_output=True)
        return path

    @property
    def mqtt5(self) -> bool:
        """True for mosquitto (MQTT 5 and 3.1.1), False for amqtt (3.1.1 only)."""
        return self.kind == "mosquitto"

    def start(self):
        """Start (or start again, on the same port); returns self."""
        if self.kind == "amqtt":
            from edge_runtime.io.broker import EmbeddedBroker
            self.embedded = EmbeddedBroker("127.0.0.1", self.port).start()
            return self
        from edge_runtime.io.broker import MosquittoProcess
        self.process = MosquittoProcess(self.workdir, self.port, self.persistence, self.listener_options,
                                        self.options).start()
        return self

    def stop(self):
        """Stop it (SIGTERM for mosquitto: persistent sessions are saved)."""
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None
        if self.process is not None:
            self.process.stop()
            self.process = None


class Subscriber:
    """A real MQTT client collecting messages (persistent session, QoS 1)."""

    def __init__(self, port, topic="roadseg/#", client_id="test-sub"):
        import threading

        import paho.mqtt.client as mqtt
        self.messages = []
        self.arrived = []  # time.monotonic() of each message, parallel to messages
        self.lock = threading.Condition()
        self.topic = topic
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                             protocol=mqtt.MQTTv311)
        self.c.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, qos=1)
        self.c.on_message = self._on_message
        self.c.reconnect_delay_set(0.2, 1)
        self.c.connect("127.0.0.1", port, keepalive=5)
        self.c.loop_start()

    def _on_message(self, c, u, msg):
        import json
        try:
            item = (msg.topic, json.loads(msg.payload) if msg.payload else None, msg.retain)
        except ValueError:
            item = (msg.topic, msg.payload, msg.retain)
        import time
        with self.lock:
            self.messages.append(item)
            self.arrived.append(time.monotonic())
            self.lock.notify_all()

    def of(self, suffix):
        """The ``(topic, payload, retained)`` received so far on topics ending with ``suffix``."""
        with self.lock:
            return [m for m in self.messages if m[0].endswith(suffix)]

    def wait_for(self, pred, timeout=20.0):
        """Block until a message satisfies ``pred`` (woken by each arrival, never polling); False on timeout."""
        with self.lock:
            return self.lock.wait_for(lambda: any(pred(m) for m in self.messages), timeout)

    def wait_for_count(self, pred, n: int, timeout=20.0):
        """Block until ``n`` messages satisfy ``pred``; False on timeout."""
        with self.lock:
            return self.lock.wait_for(lambda: sum(1 for m in self.messages if pred(m)) >= n, timeout)

    def arrival_times(self, suffix):
        """Monotonic arrival times of the messages whose topic ends with ``suffix``."""
        with self.lock:
            return [t for m, t in zip(self.messages, self.arrived) if m[0].endswith(suffix)]

    def wait_for_all(self, preds, timeout=20.0):
        """Block until every predicate in ``preds`` is satisfied by some message; False on timeout."""
        with self.lock:
            return self.lock.wait_for(lambda: all(any(p(m) for m in self.messages) for p in preds), timeout)

    def close(self):
        """Stop the client."""
        self.c.loop_stop()
        self.c.disconnect()


# --- HTTP PUT target: real nginx (apt) with its WebDAV module --------------------------

def deploy_nginx_location() -> str:
    """The ``location`` block of docs/deploy.md's nginx configuration for kept frames, as written there."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "deploy.md").read_text()
    block = text.split("# /etc/nginx/sites-enabled/roadseg-kept", 1)[1].split("```", 1)[0]
    return block.split("\n", 1)[1]


class Nginx:
    """nginx from apt (``scripts/test.sh`` installs it) on a free loopback port, accepting WebDAV PUT under
    ``/kept/<vehicle>/<file>`` with docs/deploy.md's ``location`` block as written: HTTP Basic per vehicle (``users``: {vehicle:
    password}, hashed with ``openssl passwd -apr1``), each vehicle only into its own folder, nothing else
    served. Files land in ``self.root / "kept"``; every request is in ``self.access_log`` (method, status,
    URI per line). Can be stopped and started again on the same port. Raises RuntimeError without nginx."""

    def __init__(self, workdir, users: dict[str, str]):
        import os

        from edge_runtime.io.broker import free_port
        self.exe = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
        if self.exe is None:
            raise RuntimeError("nginx is not installed (apt install nginx)")
        self.dir = Path(workdir)
        self.root = self.dir / "www"
        (self.root / "kept").mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/kept"
        self.access_log = self.dir / "access.log"
        self.process = None
        lines = []
        for name, password in users.items():
            hashed = subprocess.run(["openssl", "passwd", "-apr1", password], check=True, capture_output=True,
                                    text=True).stdout.strip()
            lines.append(f"{name}:{hashed}")
        (self.dir / "htpasswd").write_text("\n".join(lines) + "\n")
        temp = " ".join(f"{k}_temp_path {self.dir / k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        location = deploy_nginx_location().replace("/srv/roadseg", str(self.root)).replace(
            "/etc/nginx/roadseg-vehicles", str(self.dir / "htpasswd"))
        user = "user root;" if os.geteuid() == 0 else ""  # workers write where the test's (root's) tmp_path is
        (self.dir / "nginx.conf").write_text(f"""
daemon off; master_process on; worker_processes 1; {user}
pid {self.dir / 'nginx.pid'}; error_log {self.dir / 'error.log'} warn;
events {{ worker_connections 64; }}
http {{
  log_format short '$request_method $status $uri';
  access_log {self.access_log} short; {temp}
  server {{
    listen 127.0.0.1:{self.port};
{location}
    location / {{ return 404; }}
  }}
}}
""")

    def start(self):
        """Start (or start again on the same port) and wait until it accepts connections; returns self."""
        import socket
        import time
        self.process = subprocess.Popen([self.exe, "-e", str(self.dir / "error.log"), "-c",
                                         str(self.dir / "nginx.conf")], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.process.stderr.read().decode()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not accept connections within 15 s")

    def stop(self):
        """Stop it (SIGQUIT: graceful) and wait for it to exit."""
        import signal
        if self.process is not None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
            self.process = None

    def requests(self, method: str = "PUT") -> list[tuple[int, str]]:
        """``(status, uri)`` of every ``method`` request logged so far."""
        if not self.access_log.is_file():
            return []
        out = []
        for line in self.access_log.read_text().splitlines():
            m, status, uri = line.split(" ", 2)
            if m == method:
                out.append((int(status), uri))
        return out


class Watchdog:
    """A NOTIFY_SOCKET as systemd provides it: the monotonic times of WATCHDOG=1 pings (``pings``);
    ``stop.set()`` ends it."""

    def __init__(self, path):
        import socket
        import threading
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.pings: list[float] = []
        self.stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        import time
        while not self.stop.is_set():
            try:
                if b"WATCHDOG=1" in self.sock.recv(256):
                    self.pings.append(time.monotonic())
            except OSError:
                pass


def until(pred, timeout: float) -> bool:
    """True as soon as ``pred()`` holds, False after ``timeout`` seconds (looked at every 20 ms)."""
    deadline, tick = time.monotonic() + timeout, threading.Event()
    while not pred():
        if time.monotonic() > deadline:
            return False
        tick.wait(0.02)
    return True


def not_a_small_regular_file(path: Path, kind: str, max_bytes: int) -> None:
    """Make ``path`` what a bounded reader must refuse without a wait or a read: ``fifo`` (no writer),
    ``dev-zero`` (a link to /dev/zero), ``huge`` (``max_bytes + 1``, sparse), ``folder``, ``missing``."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "huge":
        with open(path, "wb") as f:
            f.truncate(max_bytes + 1)
    elif kind == "folder":
        path.mkdir()
    elif kind != "missing":
        raise ValueError(f"unknown kind {kind!r}")
