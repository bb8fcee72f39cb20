"""A mosquitto broker process on a free loopback port: what the tests, the
soak benchmark and a single-machine demo run against (the real broker, not a
mock). ``stop()`` is SIGTERM, as a restarted service gets: mosquitto saves its
persistent sessions; the same port is used when it starts again."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path


def mosquitto_path() -> str | None:
    exe = shutil.which("mosquitto")
    if exe:
        return exe
    return "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None


class MosquittoProcess:
    def __init__(self, workdir: str | Path, port: int | None = None, persistence: bool = True):
        from edge_runtime.io.publisher import free_port
        self.exe = mosquitto_path()
        if self.exe is None:
            raise FileNotFoundError("mosquitto not found (apt install mosquitto)")
        self.workdir, self.persistence = Path(workdir), persistence
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> "MosquittoProcess":
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                        f"persistence {'true' if self.persistence else 'false'}\n"
                        f"persistence_location {self.workdir}/\nautosave_interval 1\n")
        self.proc = subprocess.Popen([self.exe, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None
