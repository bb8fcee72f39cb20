"""roadseg fleet dashboard (Streamlit).

    roadseg-dashboard --mqtt-host broker.local --mqtt-username dashboard --tls-ca ca.crt   # or
    ROADSEG_DASH_MQTT_HOST=broker.local streamlit run fleet/dashboard/app.py

Pages: the fleet (the subscriber's state; alerts first, with since when, and
acknowledgement of offline vehicles; messages dropped per sender; a sortable
health table, offline vehicles greyed; per vehicle, coverage, FPS and
temperature over time on a real clock axis, each chart with its data table; the
vehicle's latest snapshot, received over MQTT; a link to its own device API)
and one-image segmentation through the configured device API.

Everything a vehicle (or anyone on the broker) sent is shown as text: never
Markdown or HTML (:func:`fleet.text.literal`, ``st.text``, table cells). Each
vehicle is drawn on its own, so one that cannot be drawn does not hide the
others. Broker and device API come from the command line or the environment,
never from the page: a visitor cannot point the dashboard's credentials elsewhere.
Before anything is drawn, :func:`fleet.dashboard.access.gate` asks for the
password where one is configured and bounds the sessions and their reruns.
"""
import os
import re
import time

import altair as alt
import pandas as pd
import streamlit as st

from edge_runtime.contract import payloads
from edge_runtime.contract.labels import CATEGORIES, PALETTE
from fleet.dashboard import access, health, releases
from fleet.dashboard.health import Thresholds
from fleet.dashboard.state import FLEET_FULL, shared_fleet
from fleet.text import UNKNOWN, clean, code, literal

st.set_option("client.showErrorDetails", "none")  # an exception shows no message, type or server paths
st.set_page_config(page_title="roadseg fleet", page_icon="🛣️", layout="wide",
                   menu_items={"About": "roadseg: semantic segmentation on vehicles, the fleet's view over MQTT."})
# the main column's side padding narrowed from 5rem: every column of the health table fits a 1,400 px window
# beside the sidebar (a constant, no broker text)
st.markdown("<style>[data-testid='stMainBlockContainer']{padding-left:1rem;padding-right:1rem}</style>",
            unsafe_allow_html=True)
try:  # the login, the bound on sessions and on reruns, before anything else is drawn or computed
    access.gate("roadseg fleet")
except ValueError as e:
    st.error(literal(f"roadseg-dashboard: {e}", 300))
    st.stop()
HEX = ["#" + "".join(f"{int(v):02x}" for v in PALETTE[i]) for i in range(len(CATEGORIES))]
GREY = "#8a8a8a"
DETAIL_LIMIT = 12  # vehicles drawn in detail per refresh (alerts first); the table lists them all


def legend_html() -> str:
    """The eight categories with their colours, as HTML built from constants only (no broker text)."""
    items = "".join(
        f"<span role='listitem' style='margin-right:12px;white-space:nowrap'><span aria-hidden='true' "
        f"style='display:inline-block;width:14px;height:14px;background:{HEX[i]};border:1px solid #444;"
        f"vertical-align:middle'></span> {c}</span>" for i, c in enumerate(CATEGORIES))
    return (f"<div role='list' aria-label='category colours' data-testid='roadseg-legend' "
            f"style='display:flex;flex-wrap:wrap;row-gap:4px'>{items}</div>")


def fmt(x, spec: str = "g") -> str:
    """A number for a metric, or :data:`fleet.text.UNKNOWN`."""
    return UNKNOWN if x is None else format(x, spec)


def time_chart(df: pd.DataFrame, title: str, y_title: str, colors: list[str] | None = None):
    """Lines over the vehicles' own timestamps, axis in HH:MM:SS; the legend below the plot, in four columns."""
    long = df.reset_index(names="time").melt("time", var_name="series", value_name="value")
    color = alt.Color("series:N", title=None, sort=list(df.columns),
                      legend=alt.Legend(orient="bottom", columns=4, labelLimit=0),
                      scale=alt.Scale(domain=list(df.columns), range=colors) if colors else alt.Undefined)
    return (alt.Chart(long, title=title).mark_line(point=len(df) < 30)
            .encode(x=alt.X("time:T", title="time (UTC)", axis=alt.Axis(format="%H:%M:%S", labelAngle=0)),
                    y=alt.Y("value:Q", title=y_title), color=color,
                    tooltip=[alt.Tooltip("time:T", format="%H:%M:%S"), "series:N", "value:Q"])
            # fit-x: the width fits the column, the height grows to hold the legend (a fixed total height
            # clipped it after "human")
            .properties(height=220, autosize=alt.AutoSizeParams(type="fit-x", contains="padding")))


def chart_with_table(df: pd.DataFrame, title: str, y_title: str, colors=None):
    """``title`` is built by the page from a validated device id; the table is an HTML table (screen readers)."""
    st.altair_chart(time_chart(df, title, y_title, colors), width="stretch")
    with st.expander(f"{title}: data table (last 30 rows)"):
        tail = df.tail(30).copy()
        tail.index = tail.index.strftime("%H:%M:%S")
        st.table(tail.rename_axis("time (UTC)").round(3))


def frame(rows, columns, names: dict[str, str]) -> pd.DataFrame:
    """Ring rows (column 0 the epoch time) -> a frame indexed by UTC time; rows without a valid time dropped."""
    df = pd.DataFrame(rows, columns=columns)
    df.index = pd.to_datetime(df.pop("ts"), unit="s", utc=True, errors="coerce")
    return df[df.index.notna()][list(names)].rename(columns=names)


def settings_from_env():
    """Broker settings, listed ids and the device API override, from the environment (roadseg-dashboard sets it)."""
    from fleet.broker import from_env
    known = tuple(x for x in os.environ.get("ROADSEG_DASH_VEHICLES", "").replace(",", " ").split() if x)
    bad = [x for x in known if not re.fullmatch(payloads.DEVICE_ID_PATTERN, x)]
    if bad:
        raise ValueError(f"ROADSEG_DASH_VEHICLES: {clean(bad[0], 40)!r} is not a device id")
    api = os.environ.get("ROADSEG_DASH_DEVICE_API", "").rstrip("/")
    if api and not re.fullmatch(payloads.API_URL_PATTERN, api):
        raise ValueError("ROADSEG_DASH_DEVICE_API: use http(s)://host[:port]")
    return from_env(), known, api


def subscriber_banner(fleet) -> None:
    """Whether the subscriber is connected, refused, reconnecting (and why) or stopped for good."""
    sub = fleet.subscriber
    where = literal(f"broker {fleet.settings.address}")
    if sub.stopped:
        st.error(f"The MQTT subscriber has stopped ({code(sub.stopped)}): nothing on this page updates any more. "
                 f"Restart the dashboard.")
    elif sub.refused:
        st.error(f"{where}: {code(sub.error)}")
    elif not fleet.connected:
        st.warning(f"{where}: {code(sub.error) if sub.error else 'connecting…'}")
    else:
        who = f" as {fleet.settings.username}" if fleet.settings.username else ""
        st.caption(literal(f"broker {fleet.settings.address} — connected{who}", 300))


def drops_banner(fleet) -> int:
    """Messages refused by the intake, per sender; returns how many came from new ids while the table was full."""
    drops = fleet.intake.drops()
    refused = sum(d.count for s, d in drops if s == FLEET_FULL)
    bad = [(s, d) for s, d in drops if s != FLEET_FULL]
    if refused:
        st.warning(f"{refused} messages from new ids were refused: the dashboard tracks at most "
                   f"{fleet.max_vehicles} vehicles, and never drops one it tracks (or one listed with --vehicle) "
                   f"for a new id.")
    if bad:
        st.warning(f"{sum(d.count for _, d in bad)} messages dropped from {len(bad)} senders "
                   f"(too large, or not a valid payload).")
        with st.expander("dropped messages per sender"):
            st.dataframe(pd.DataFrame([{"sender": s, "dropped": d.count, "last reason": d.last_reason}
                                       for s, d in bad[:200]]), hide_index=True, width="stretch")
    return refused


def alerts_section(fleet, vehicles, now: float, th: Thresholds, refused: int) -> None:
    """Alerts oldest first, each with an acknowledge button where it is about reachability; else one summary line."""
    alerts = health.fleet_alerts(vehicles, now, th)
    by_id = {v.device_id: v for v in vehicles}
    for a in alerts:
        left, right = st.columns([6, 1])
        detail = f": {code(a.detail, 300)}" if a.detail else ""
        left.error(f"{literal(a.kind.replace('_', ' '))} — {literal(a.message)}{detail}, since {a.since_text}")
        key = health.ack_key(by_id[a.vehicle], now, th)
        if key is not None:
            right.button("acknowledge", key=f"ack-{a.vehicle}-{key}", on_click=fleet.acknowledge,
                         args=(a.vehicle, key), help="hide this alert until the vehicle's condition changes")
    conds = [health.condition(v, now, th).kind for v in vehicles]
    if alerts:
        return
    if refused:
        st.info(f"No alerts among the {len(vehicles)} vehicles tracked; ids beyond them are not shown (above).")
    elif all(c == "online" for c in conds):
        st.success(f"All {len(vehicles)} vehicles healthy.")
    else:
        st.success(f"No alerts: {conds.count('online')} of {len(vehicles)} vehicles online, "
                   f"{conds.count('stopped')} stopped on purpose, the rest acknowledged.")


#: the health table's headers, short enough for every column to fit a 1,400 px window beside the sidebar
#: (the frame keeps the long names: they say the units)
TABLE_COLUMNS = {
    "vehicle": st.column_config.TextColumn("vehicle", help="device id", width=72),
    "state": st.column_config.TextColumn("state", width=84),
    "fps": st.column_config.NumberColumn("FPS", help="frames per second achieved", width=46),
    "target fps": st.column_config.NumberColumn("target", help="target FPS", width=52),
    "dropped frames": st.column_config.NumberColumn("dropped", help="dropped frames", width=62),
    "latency p50 ms": st.column_config.NumberColumn("p50 ms", help="latency p50 (ms)", width=56),
    "latency p99 ms": st.column_config.NumberColumn("p99 ms", help="latency p99 (ms)", width=56),
    "CPU °C": st.column_config.NumberColumn("°C", help="CPU temperature (°C)", width=44),
    "RSS MB": st.column_config.NumberColumn("RSS MB", help="resident memory (MB)", width=60),
    "MQTT queued": st.column_config.NumberColumn("queued", help="MQTT messages queued on the vehicle", width=58),
    "MQTT dropped": st.column_config.NumberColumn("drops", help="MQTT messages dropped on the vehicle", width=50),
    "uptime min": st.column_config.NumberColumn("uptime min", help="minutes since roadseg-run started", width=76),
    "road ahead drivable %": st.column_config.NumberColumn("drivable %", help="road ahead drivable (%)", width=70),
    "model": st.column_config.TextColumn("model", help="the fleet release it runs (→ the one it tries, how far), "
                                         "the model's name and the first 8 hex of its sha256", width=128),
    "last seen s ago": st.column_config.NumberColumn("seen s ago", help="seconds since its last message", width=72),
    "live view": st.column_config.LinkColumn("live view", help="the vehicle's own device API", display_text="open",
                                             width=62),
}


def table(vehicles, now: float, th: Thresholds, api_override: str) -> None:
    """The health table: numbers stay numbers (sortable), a missing value reads — (``placeholder``),
    unreachable vehicles' rows are grey and have no live-view link."""
    rows, grey = [], []
    for v in vehicles:
        c = health.condition(v, now, th)
        s, cov = v.stats, v.coverage
        model = (v.status.model if v.status else None) or (s.model if s else None)
        api = api_override or (v.status.api if v.status else None)
        rows.append({
            "vehicle": v.device_id, "state": c.kind.replace("_", " "),
            "fps": cov.fps if cov else (s.fps.achieved if s else None), "target fps": s.fps.target if s else None,
            "dropped frames": s.dropped_frames if s else None, "latency p50 ms": s.latency_ms.p50 if s else None,
            "latency p99 ms": s.latency_ms.p99 if s else None, "CPU °C": s.cpu_temp_c if s else None,
            "RSS MB": s.memory.rss_mb if s else None, "MQTT queued": s.mqtt.queued if s else None,
            "MQTT dropped": s.mqtt.dropped if s else None,
            "uptime min": round(s.uptime_s / 60, 1) if s else None,
            "road ahead drivable %": round(100 * cov.zones.road_ahead.drivable, 1) if cov else None,
            "model": releases.with_release(v, (clean(model.name, 80) + (f" {clean(model.sha256, 8)}" if model.sha256
                                                                        else "")) if model else None),
            "last seen s ago": round(now - v.last_seen, 1) if v.last_seen else None,
            "live view": f"{api}/v1/stream.mjpg" if api and c.kind not in health.UNREACHABLE else None})
        grey.append(c.kind in health.UNREACHABLE)
    counts = ("dropped frames", "MQTT queued", "MQTT dropped")
    df = pd.DataFrame(rows).astype(dict.fromkeys(counts, "Int64"))  # counts stay integers beside missing values
    styled = (df.style.format(precision=1, na_rep=UNKNOWN)
              .apply(lambda r: [f"color: {GREY}" if grey[r.name] else ""] * len(r), axis=1))
    st.dataframe(styled, hide_index=True, width="stretch", placeholder=UNKNOWN, column_config=TABLE_COLUMNS)


def vehicle_section(v, now: float, th: Thresholds, api_override: str) -> None:
    """One vehicle: state, figures, charts, snapshot. Everything it sent is shown as text."""
    name, c = v.device_id, health.condition(v, now, th)
    off = c.kind in health.UNREACHABLE
    head = f"{literal(name)} — {c.kind.replace('_', ' ')}"
    st.subheader(f":gray[{head}]" if off else head)
    figures = v.stats is not None or len(v.coverage_rows) > 0  # what "the last received" would refer to
    last = "; figures below are the last received" if figures else ""
    if c.kind == "never_seen":
        st.caption(f"nothing received from {literal(name)} since the dashboard started at {health.hhmmss(c.since)}")
    elif c.kind == "stopped":
        st.caption(f"stopped on purpose at {health.hhmmss(c.since)}: no alert{last}")
    elif off:
        st.caption(f"{c.kind.replace('_', ' ')} since {health.hhmmss(c.since)}{last}")
    if v.model_state is not None:
        st.text(clean(releases.vehicle_line(v), 600))
    if v.status is not None:
        st.text(clean("; ".join(f"{k} {x}" for k, x in (
            ("model", v.status.model.name if v.status.model else None), ("source", v.status.source),
            ("reason", v.status.reason), ("error", v.status.error)) if x), 600))
    api = api_override or (v.status.api if v.status else None)
    if api and not off:
        st.markdown(f"Live view: [{literal(api)}/v1/stream\\.mjpg]({api}/v1/stream.mjpg) (a device protected by a "
                    f"token hands out a signed link: `POST /v1/live-url` on the device itself)")
    s = v.stats
    if s is not None:
        m = st.columns(6)
        m[0].metric("FPS / target", f"{s.fps.achieved:.1f}/{s.fps.target:g}")
        m[1].metric("dropped frames", fmt(s.dropped_frames))
        m[2].metric("latency p99 ms", fmt(s.latency_ms.p99))
        m[3].metric("CPU °C", fmt(s.cpu_temp_c, ".1f"))
        m[4].metric("MQTT queued", fmt(s.mqtt.queued))
        m[5].metric("camera", UNKNOWN if off else clean(s.camera.state, 20))
    left, right = st.columns([2, 1])
    with left:
        if len(v.coverage_rows):
            df = frame(v.coverage_rows, ["ts", *CATEGORIES], {c: c for c in CATEGORIES})
            chart_with_table(df, f"{name}: coverage", "fraction of the frame", HEX)
        if len(v.stats_rows):
            cols = ["ts", "achieved", "target", "temp", "queued"]
            chart_with_table(frame(v.stats_rows, cols, {"achieved": "achieved FPS", "target": "target FPS"}),
                             f"{name}: frame rate", "FPS", ["#0072b2", "#999999"])
            temps = frame(v.stats_rows, cols, {"temp": "CPU °C"}).dropna()
            if len(temps):
                chart_with_table(temps, f"{name}: CPU temperature", "°C", ["#d55e00"])
    with right:
        if v.snapshot:
            st.image(v.snapshot, caption=f"{name}: latest snapshot over MQTT, received {now - v.snapshot_at:.0f} s ago",
                     width="stretch")
        else:
            st.caption(f"No snapshot from {name} (roadseg-run --snapshot-interval S sends them).")


def detail_order(vehicles, now: float, th: Thresholds) -> list:
    """Vehicles with alerts first (oldest alert first), then listed ids, then the most recently heard."""
    first = {}
    for a in health.fleet_alerts(vehicles, now, th):
        first.setdefault(a.vehicle, a.since)
    return sorted(vehicles, key=lambda v: (v.device_id not in first, first.get(v.device_id, 0), not v.pinned,
                                           -(v.last_seen or 0), v.device_id))


def isolated(what: str, fn, *args) -> None:
    """Draw one part of the page; if it fails, say so in one line and go on with the rest."""
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - one bad vehicle must not hide the others
        st.warning(f"{literal(what)} could not be drawn ({type(e).__name__}); the rest of the page is unaffected.")


try:
    SETTINGS, KNOWN, API = settings_from_env()
except ValueError as e:
    st.error(literal(f"roadseg-dashboard: {e}", 300))
    st.stop()
page = st.sidebar.radio("page", ["Fleet", "Segment an image"])
st.sidebar.caption(literal(f"broker {SETTINGS.address}" + (f"; device API {API}" if API else ""), 300))
fleet = shared_fleet(SETTINGS, KNOWN)
with st.sidebar.expander("alert thresholds"):
    th = Thresholds(
        silent_after_s=st.number_input("offline after silence (s)", value=float(os.environ.get(
            "ROADSEG_DASH_SILENT_S", Thresholds.silent_after_s)), min_value=1.0),
        min_fps_fraction=st.number_input("FPS alert below this fraction of target", value=float(os.environ.get(
            "ROADSEG_DASH_MIN_FPS_FRACTION", Thresholds.min_fps_fraction)), min_value=0.0, max_value=1.0),
        max_temp_c=st.number_input("CPU temperature limit (°C)", value=float(os.environ.get(
            "ROADSEG_DASH_MAX_TEMP_C", Thresholds.max_temp_c))),
        max_queued=int(st.number_input("MQTT queue alert above", value=int(os.environ.get(
            "ROADSEG_DASH_MAX_QUEUED", Thresholds.max_queued)), min_value=0)))
auto = st.sidebar.checkbox("auto-refresh every 2 s", value=True)


@st.fragment(run_every=2 if auto else None)
def fleet_view():
    """The fleet page, redrawn every 2 s: subscriber, drops, alerts, table, legend, vehicles in detail."""
    if not access.rerun_allowed():  # each redraw counts against the session's budget (fleet.dashboard.access)
        st.caption("Paused: too many refreshes from this page; it resumes within seconds.")
        return
    subscriber_banner(fleet)
    now = time.time()
    vehicles = fleet.view()
    refused = drops_banner(fleet)
    if not vehicles:
        st.info("No vehicles yet: waiting for messages on roadseg/+/coverage, status, stats and snapshot.")
        return
    isolated("the alerts", alerts_section, fleet, vehicles, now, th, refused)
    progress = releases.rollout(vehicles)
    if progress is not None:
        st.caption(literal(progress.text(), 600))
    isolated("the fleet table", table, vehicles, now, th, API)
    st.markdown(legend_html(), unsafe_allow_html=True)  # constants only
    shown = detail_order(vehicles, now, th)[:DETAIL_LIMIT]
    if len(shown) < len(vehicles):
        st.caption(f"Details for {len(shown)} of {len(vehicles)} vehicles (alerts first, then listed ids, then the "
                   f"most recently heard); the table lists them all.")
    for v in shown:
        with st.container():
            isolated(f"vehicle {v.device_id}", vehicle_section, v, now, th, API)


def segment_page():
    """One image through the configured device API (never a URL typed on the page: the token goes there)."""
    if not API:
        st.warning("Start the dashboard with --device-api http://HOST:PORT (roadseg-serve or roadseg-run --http).")
        return
    up = st.file_uploader("JPEG or PNG image", type=["jpg", "jpeg", "png"])
    if up is None:
        return
    import httpx
    token = os.environ.get("ROADSEG_API_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    files = {"file": (up.name, up.getvalue(), up.type)}
    try:
        cov = httpx.post(f"{API}/v1/segment", files=files, headers=headers, timeout=30)
        mask = httpx.post(f"{API}/v1/segment?format=png&view=mask", files=files, headers=headers, timeout=30)
        cov.raise_for_status()
        mask.raise_for_status()
        if len(cov.content) > payloads.MAX_BYTES["segment"]:
            raise ValueError(f"answer of {len(cov.content)} bytes")
        result = payloads.SegmentResult.model_validate_json(cov.content)
    except (httpx.HTTPError, ValueError) as e:
        st.error(literal(f"device API error: {type(e).__name__}: {clean(e, 200)}", 300))
        return
    c1, c2 = st.columns(2)
    c1.image(up.getvalue(), caption="image")
    isolated("the mask", c2.image, mask.content, "segmentation mask")
    st.markdown(legend_html(), unsafe_allow_html=True)
    st.table(pd.DataFrame({"category": list(CATEGORIES),
                           "coverage %": [round(100 * getattr(result.coverage, c), 1) for c in CATEGORIES]}))


if page == "Fleet":
    st.title("roadseg fleet")
    fleet_view()
else:
    st.title("Segment an image on a vehicle")
    segment_page()
