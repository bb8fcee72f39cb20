"""Brokers the vehicle can run against without installing one: an embedded
amqtt broker in-process (:class:`EmbeddedBroker`, what ``roadseg-run``
starts when no ``--mqtt-host`` is given) and a mosquitto process on a free
loopback port (:class:`MosquittoProcess`: what the tests, the soak benchmark
and a single-machine demo run against: the real broker, not a mock).
:func:`free_port` finds a port for either.
"""
from __future__ import annotations

import asyncio
import logging
import os
import pwd
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

log = logging.getLogger("roadseg.mqtt")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (the OS picks it; a
    race with another process binding it first is possible, as always)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def mosquitto_path() -> str | None:
    """The mosquitto executable (on PATH or /usr/sbin/mosquitto), or None."""
    exe = shutil.which("mosquitto")
    if exe:
        return exe
    return "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None


class MosquittoProcess:
    """mosquitto on ``127.0.0.1:port`` with its config in ``workdir``.

    ``listener_options``: config lines for the listener (e.g. ``cafile``,
    ``certfile``, ``keyfile`` for TLS); ``options``: global lines (e.g.
    ``password_file``, ``acl_file``, ``message_size_limit 8000``,
    ``allow_anonymous false``; anonymous clients are allowed unless a line
    says otherwise). ``stop()`` is SIGTERM, as a restarted service gets:
    mosquitto saves its persistent sessions; the same port is used when it
    starts again. Raises FileNotFoundError when mosquitto is not installed,
    RuntimeError when it does not listen within the start timeout."""

    def __init__(self, workdir: str | Path, port: int | None = None, persistence: bool = True,
                 listener_options: list[str] | tuple = (), options: list[str] | tuple = ()):
        self.exe = mosquitto_path()
        if self.exe is None:
            raise FileNotFoundError("mosquitto not found (apt install mosquitto)")
        self.workdir, self.persistence = Path(workdir), persistence
        self.listener_options, self.options = list(listener_options), list(options)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    def config(self) -> str:
        """The mosquitto.conf text."""
        lines = [f"listener {self.port} 127.0.0.1", *self.listener_options]
        if not any(o.split()[0] == "allow_anonymous" for o in self.options if o.strip()):
            lines.append("allow_anonymous true")
        lines += [f"persistence {'true' if self.persistence else 'false'}",
                  f"persistence_location {self.workdir}/", "autosave_interval 1", *self.options]
        if os.geteuid() == 0:  # mosquitto started as root drops to user "mosquitto", who cannot read 0600 files
            lines.insert(0, f"user {pwd.getpwuid(0).pw_name}")
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> "MosquittoProcess":
        """Start mosquitto and wait until it accepts TCP connections."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(self.config())
        self.proc = subprocess.Popen([self.exe, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.time() + timeout
        while time.time() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not start on port {self.port} (config {conf})")

    def stop(self) -> None:
        """SIGTERM, then wait for the process to end."""
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


class EmbeddedBroker:
    """An in-process amqtt broker (MQTT 3.1.1) bound to ``host:port`` (another
    free port when that one is taken), so a single machine works with no
    broker installed. ``start()`` raises RuntimeError when amqtt is missing or
    the broker does not start within ``timeout`` seconds."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883):
        self.host, self.port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker = None

    def start(self, timeout: float = 10.0) -> "EmbeddedBroker":
        """Start the broker on its own thread and event loop; returns self."""
        try:
            from amqtt.broker import Broker
        except ImportError as e:
            raise RuntimeError("no --mqtt-host given and amqtt is not installed (pip install amqtt)") from e
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as amqtt binds: a TIME_WAIT is no conflict
            try:
                s.bind((self.host, self.port))
            except OSError:
                self.port = free_port(self.host)
        config = {"listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
                  "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}}
        ready = threading.Event()
        errors: list[BaseException] = []

        def run():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            try:
                self._broker = Broker(config, loop=self._loop) if "loop" in Broker.__init__.__code__.co_varnames \
                    else Broker(config)
                self._loop.run_until_complete(self._broker.start())
            except BaseException as e:  # reported to the starting thread
                errors.append(e)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()

        logging.getLogger("amqtt").setLevel(logging.WARNING)
        logging.getLogger("transitions").setLevel(logging.WARNING)
        self._thread = threading.Thread(target=run, name="embedded-broker", daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or errors:
            raise RuntimeError(f"embedded MQTT broker failed to start: {errors[0] if errors else 'timeout'}")
        log.info("no --mqtt-host: started an embedded MQTT broker (amqtt, MQTT 3.1.1) on %s:%d; subscribe with: "
                 "mosquitto_sub -h %s -p %d -t 'roadseg/#' -v", self.host, self.port, self.host, self.port)
        return self

    def stop(self) -> None:
        """Shut the broker down (at most about 10 s)."""
        if self._loop is None or self._broker is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
        try:
            fut.result(timeout=5)
        except Exception:  # shutting down anyway
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(timeout=5)
