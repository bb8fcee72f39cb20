"""The dashboard against anyone who can reach its port (issue 32 item 5): ``roadseg-dashboard`` refuses
to listen beyond loopback without a login; with ``--password-file`` a real Streamlit server asks for the
password, serves at most ``--max-sessions`` sessions (one more is told "too many viewers") and bounds
each session's page runs. Sessions are driven over Streamlit's own websocket protocol (what its
frontend sends: ``BackMsg`` protobufs), several at once, against a real broker."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from fleet.dashboard.access import RERUN_BURST, Sessions, password_matches

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fleet.dashboard.cli", *args], cwd=ROOT, capture_output=True,
                          check=False, text=True, timeout=timeout, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("http", ["0.0.0.0:{port}", "10.20.30.40:{port}", "[::]:{port}", "dash.example:{port}"])
def test_a_bind_beyond_loopback_without_a_login_is_refused_in_one_line(http):
    port = _free_port()
    r = _cli("--http", http.format(port=port))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr[-800:]
    assert "without a login" in r.stderr and "--password-file" in r.stderr and "--behind-proxy" in r.stderr
    with socket.socket() as s:  # nothing started listening
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_a_password_file_that_is_not_a_small_regular_file_is_refused(tmp_path):
    zero = tmp_path / "password"
    zero.symlink_to("/dev/zero")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for path, why in ((zero, "not a regular file (a character device)"), (fifo, "not a regular file (a FIFO)"),
                      (empty, "it is empty")):
        r = _cli("--http", "0.0.0.0:8501", "--password-file", str(path))
        assert r.returncode == 2 and r.stderr.strip() == (
            f"roadseg-dashboard: error: cannot read the dashboard password file {path}: {why}"), r.stderr[-800:]


def test_sessions_hold_places_until_their_websocket_closes_and_rerun_within_a_budget():
    alive = {"a", "b", "c"}
    pool = Sessions(2, burst=3, per_s=0.0)
    assert pool.admit("a", alive.__contains__) and pool.admit("b", alive.__contains__)
    assert not pool.admit("c", alive.__contains__)
    alive.discard("a")
    assert pool.admit("c", alive.__contains__) and len(pool) == 2
    assert [pool.rerun("c") for _ in range(4)] == [True, True, True, False]
    assert password_matches(PASSWORD, PASSWORD) and not password_matches(PASSWORD[:-1], PASSWORD)


class Session:
    """One browser session as Streamlit's frontend speaks it: a websocket to ``/_stcore/stream``,
    ``rerun_script`` requests (with widget values), and the elements of each run."""

    def __init__(self, port: int):
        from websockets.sync.client import connect
        self.ws = connect(f"ws://127.0.0.1:{port}/_stcore/stream", max_size=None, open_timeout=30)
        self.widgets: dict[str, str] = {}  # label -> widget id, from the last run

    def run(self, values: dict[str, str] | None = None, press: str | None = None, timeout: float = 60) -> str:
        """Ask for a run (``values``: text inputs by label; ``press``: a button's label) and return the text
        of every element drawn until the page's run finished (a run ended by ``st.rerun`` goes on)."""
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
        msg = BackMsg()
        msg.rerun_script.query_string = ""
        msg.rerun_script.page_script_hash = ""
        for label, value in (values or {}).items():
            w = msg.rerun_script.widget_states.widgets.add()
            w.id, w.string_value = self.widgets[label], value
        if press:
            w = msg.rerun_script.widget_states.widgets.add()
            w.id, w.trigger_value = self.widgets[press], True
        self.ws.send(msg.SerializeToString())
        texts = []
        while True:
            fm = ForwardMsg()
            fm.ParseFromString(self.ws.recv(timeout=timeout))
            kind = fm.WhichOneof("type")
            if kind == "delta" and fm.delta.WhichOneof("type") == "new_element":
                element = fm.delta.new_element
                part = getattr(element, element.WhichOneof("type"))
                if getattr(part, "label", "") and getattr(part, "id", ""):
                    self.widgets[part.label] = part.id
                texts.append(str(part))
            elif kind == "new_session":  # a run starts (also the one st.rerun asked for): its page alone
                texts = []
            elif kind == "script_finished" and fm.script_finished in (ForwardMsg.FINISHED_SUCCESSFULLY,
                                                                      ForwardMsg.FINISHED_WITH_COMPILE_ERROR):
                return "\n".join(texts)

    def close(self):
        self.ws.close()


LOGIN, FLEET, FULL = 'label: "password"', "No vehicles yet", "Too many viewers"


def _until(session: Session, want: str, tries: int = 5) -> str:
    """Runs of ``session`` until one draws ``want`` (the server notices a closed websocket on its own
    loop, a moment after the close handshake); the last run's text."""
    for _ in range(tries):
        page = session.run()
        if want in page:
            break
    return page


def test_a_real_dashboard_asks_for_its_password_and_bounds_sessions_and_reruns(broker, tmp_path):
    """Started as the issue's operator would (``--http 0.0.0.0``, now with ``--password-file``) and
    ``--max-sessions 2``: two sessions wait at the login, a third is told "too many viewers"; a wrong
    password is refused, the right one shows the fleet; two viewers at most, a place comes back when a
    websocket closes; a session that asks for runs faster than its budget gets a notice, not the page."""
    pytest.importorskip("websockets")
    pw = tmp_path / "dashboard.password"
    pw.write_text(PASSWORD + "\n")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleet.dashboard.cli", "--http", f"0.0.0.0:{port}", "--password-file", str(pw),
         "--max-sessions", "2", "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port), "--mqtt-protocol",
         "3.1.1"], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    sessions = []
    try:
        for line in proc.stdout:  # the server says when it listens: no polling
            if "You can now view" in line:
                break
        else:
            raise AssertionError("roadseg-dashboard did not start")
        threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep its pipe drained
        a, b, c = (Session(port) for _ in range(3))
        sessions += [a, b, c]
        first = [s.run() for s in (a, b, c)]
        assert LOGIN in first[0] and LOGIN in first[1] and FLEET not in first[0], first[0]
        assert FULL in first[2] and LOGIN not in first[2], first[2]  # a third session, even at the login
        page = a.run({"password": "wrong"}, press="log in")
        assert "Wrong password." in page and FLEET not in page
        page = a.run({"password": PASSWORD}, press="log in")
        assert FLEET in page and LOGIN not in page, page
        assert FLEET in b.run({"password": PASSWORD}, press="log in")
        c.close()  # a and b left the login's places: a fourth session gets one, but no viewer place
        d = Session(port)
        sessions.append(d)
        assert LOGIN in d.run()
        assert FULL in d.run({"password": PASSWORD}, press="log in")
        a.close()  # a viewer leaves: d is in, still logged in
        page = _until(d, FLEET)
        assert FLEET in page and LOGIN not in page, page
        # b asks for runs back to back: after its burst the page is not drawn, a notice is
        seen = [b.run() for _ in range(RERUN_BURST + 10)]
        notices = [p for p in seen if "Too many refreshes" in p]
        assert notices and all(FLEET not in p and "No vehicles yet" not in p for p in notices), seen[-1]
        assert FLEET in d.run()  # d's budget is its own
    finally:
        for s in sessions:
            s.close()
        proc.terminate()
        proc.wait(timeout=20)
