"""Who may use the dashboard, and how much: a login of its own, a bound on sessions, a bound on reruns.

Streamlit's own login is OIDC only and it bounds no sessions, so the page
calls :func:`gate` before it draws anything:

* with a password (``roadseg-dashboard --password-file``, handed to the page
  as ``ROADSEG_DASH_PASSWORD_FILE``) a session sees a login form until it
  gives the password (compared with :func:`hmac.compare_digest`); it then
  stays logged in until its browser tab closes (a reload is a new session).
  At most :data:`LOGIN_FAILURES` wrong passwords a minute are checked, from
  all sessions together;
* at most ``max_sessions`` sessions see the fleet at once
  (``ROADSEG_DASH_MAX_SESSIONS``, default :data:`DEFAULT_MAX_SESSIONS`) and as
  many may wait at the login form; one more sees "too many viewers" (a
  session leaves the count when its websocket closes);
* each session may run the page :data:`RERUN_BURST` times at once and
  :data:`RERUN_PER_S` times a second after that (the fleet view refreshes
  every 2 s); beyond, the run draws a short notice instead of the page.

A script run outside a served session (Streamlit's AppTest) is counted by
no bound: there is no server to protect.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_MAX_SESSIONS = 8
#: page runs one session may make at once, then per second (a token bucket)
RERUN_BURST = 10
RERUN_PER_S = 1.0
#: wrong passwords checked per minute, all sessions together (beyond: "wait", unchecked)
LOGIN_FAILURES = 10
AUTH_KEY = "roadseg_authenticated"


class _Budget:
    """A token bucket: ``burst`` tokens, ``per_s`` added per second (monotonic clock)."""

    def __init__(self, burst: int, per_s: float, now: float):
        self.burst, self.per_s, self.tokens, self.at = burst, per_s, float(burst), now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.per_s)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Sessions:
    """At most ``limit`` sessions at once, each with its own rerun budget.
    Thread-safe: Streamlit runs each session's script in its own thread."""

    def __init__(self, limit: int, burst: int = RERUN_BURST, per_s: float = RERUN_PER_S):
        self.limit, self.burst, self.per_s = limit, burst, per_s
        self._held: dict[str, _Budget] = {}
        self._lock = threading.Lock()

    def admit(self, session_id: str, alive: Callable[[str], bool]) -> bool:
        """Whether ``session_id`` holds (or now takes) a place. Sessions for which
        ``alive`` is False (their websocket closed) give theirs back first."""
        with self._lock:
            if session_id in self._held:
                return True
            for gone in [s for s in self._held if not alive(s)]:
                del self._held[gone]
            if len(self._held) >= self.limit:
                return False
            self._held[session_id] = _Budget(self.burst, self.per_s, time.monotonic())
            return True

    def rerun(self, session_id: str) -> bool:
        """Whether a session holding a place may run the page now (takes one from its budget);
        True for a session that holds none (it is not counted)."""
        with self._lock:
            budget = self._held.get(session_id)
            return budget is None or budget.take(time.monotonic())

    def discard(self, session_id: str) -> None:
        """Give ``session_id``'s place back (it moved to another pool)."""
        with self._lock:
            self._held.pop(session_id, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)


class LoginThrottle:
    """At most ``failures`` wrong passwords per ``window_s`` seconds, all sessions together."""

    def __init__(self, failures: int = LOGIN_FAILURES, window_s: float = 60.0):
        self.failures, self.window_s = failures, window_s
        self._at: list[float] = []
        self._lock = threading.Lock()

    def allowed(self) -> bool:
        """Whether a password may be checked now."""
        now = time.monotonic()
        with self._lock:
            self._at = [t for t in self._at if now - t < self.window_s]
            return len(self._at) < self.failures

    def failed(self) -> None:
        """Count one wrong password."""
        with self._lock:
            self._at.append(time.monotonic())


def password_matches(given: str, expected: str) -> bool:
    """Constant-time comparison of two passwords (of their SHA-256 digests, so the time
    does not depend on the lengths either)."""
    return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest())


def read_password(path: str) -> str:
    """The first line of the dashboard's password file (stripped): a regular file of at most 4 KiB.
    Raises ValueError (one line naming the file, never its content) when it is missing, not a
    regular file, too large, not UTF-8 or empty."""
    from edge_runtime.atomic import read_small_text
    from edge_runtime.io.credentials import MAX_SECRET_FILE_BYTES
    lines = read_small_text(path, MAX_SECRET_FILE_BYTES, "the dashboard password file").splitlines()
    if not lines or not lines[0].strip():
        raise ValueError(f"cannot read the dashboard password file {path}: it is empty")
    return lines[0].strip()


@dataclass(frozen=True)
class Access:
    """The page's access settings: the password (None: no login) and the session bound."""
    password: str | None
    max_sessions: int


@functools.lru_cache(maxsize=1)
def access_from_env() -> Access:
    """From ``ROADSEG_DASH_PASSWORD_FILE`` and ``ROADSEG_DASH_MAX_SESSIONS`` (read once per process).
    Raises ValueError (one line) for an unreadable password file or a bound that is not a positive integer."""
    pfile = os.environ.get("ROADSEG_DASH_PASSWORD_FILE")
    raw = os.environ.get("ROADSEG_DASH_MAX_SESSIONS", str(DEFAULT_MAX_SESSIONS))
    if not (raw.isascii() and raw.isdigit() and 0 < int(raw) <= 10_000):
        raise ValueError(f"ROADSEG_DASH_MAX_SESSIONS {raw[:20]!r}: use a whole number from 1 to 10000")
    return Access(read_password(pfile) if pfile else None, int(raw))


_pools_lock = threading.Lock()
_pools: dict[str, Sessions] = {}


def pools(limit: int) -> tuple[Sessions, Sessions, LoginThrottle]:
    """The process's viewers and login-form pools (``limit`` each) and its login throttle."""
    with _pools_lock:
        if not _pools:
            _pools.update(viewers=Sessions(limit), logins=Sessions(limit))
            _pools["throttle"] = LoginThrottle()  # type: ignore[assignment]
        return _pools["viewers"], _pools["logins"], _pools["throttle"]  # type: ignore[return-value]


def served_session() -> tuple[str, Callable[[str], bool]] | None:
    """``(session id, is_active)`` of the session running this script, or None outside a served
    session (AppTest, bare mode): a session counts only where Streamlit's runtime serves it."""
    from streamlit.runtime import Runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx
    ctx = get_script_run_ctx()
    if ctx is None or not Runtime.exists():
        return None
    runtime = Runtime.instance()
    if runtime.is_active_session(ctx.session_id) is not True:  # AppTest's runtime is a mock
        return None
    return ctx.session_id, runtime.is_active_session


def gate(title: str) -> None:
    """Call first on the page: returns when this session may see the page; otherwise draws the
    login form, "too many viewers" or "too many refreshes" under ``title`` and stops the run."""
    import streamlit as st
    access = access_from_env()
    viewers, logins, throttle = pools(access.max_sessions)
    authed = access.password is None or st.session_state.get(AUTH_KEY) is True
    served = served_session()
    if served is not None:
        sid, alive = served
        pool = viewers if authed else logins
        if not pool.admit(sid, alive):
            st.title(title)
            st.error(f"Too many viewers: this dashboard serves {access.max_sessions} sessions at once"
                     f"{'' if authed else ' and as many at its login'}. Reload the page when one has closed.")
            st.stop()
        if not pool.rerun(sid):
            st.title(title)
            st.warning(f"Too many refreshes from this page (more than {RERUN_PER_S:g} a second): "
                       f"wait a few seconds, then reload or click anywhere.")
            st.stop()
    if authed:
        return
    st.title(title)
    with st.form("roadseg-login"):
        given = st.text_input("password", type="password", max_chars=4096)
        submitted = st.form_submit_button("log in")
    if submitted:
        if not throttle.allowed():
            st.error("Too many wrong passwords in the last minute: wait, then try again.")
        elif password_matches(given, access.password):
            st.session_state[AUTH_KEY] = True
            if served is not None:
                logins.discard(served[0])
            st.rerun()
        else:
            throttle.failed()
            st.error("Wrong password.")
    st.stop()


def rerun_allowed() -> bool:
    """Whether a partial rerun (the fleet view's fragment, every 2 s) may draw now: it takes one
    from the session's budget; True within a full run (:func:`gate` counted it) and outside a
    served session."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx
    ctx = get_script_run_ctx()
    served = served_session()
    if served is None or ctx is None or not ctx.fragment_ids_this_run:
        return True
    viewers, _, _ = pools(access_from_env().max_sessions)
    return viewers.rerun(served[0])
