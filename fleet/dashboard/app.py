"""roadseg fleet dashboard (Streamlit).

    roadseg-dashboard --mqtt-host broker.local          # or
    ROADSEG_DASH_MQTT_HOST=broker.local streamlit run fleet/dashboard/app.py

Pages: the fleet (alerts first, with since when; a sortable health table from
each vehicle's status and stats; per vehicle, coverage, FPS and temperature
over time on a real clock axis, each chart with its data table; the vehicle's
latest snapshot, received over MQTT; a link to its own device API) and
one-image segmentation through a device API. Colours are the colour-blind-safe
palette, and every colour has its category name beside it.
"""
import datetime as dt
import os
import time

import altair as alt
import pandas as pd
import streamlit as st

from edge_runtime.contract.labels import CATEGORIES, PALETTE
from fleet.dashboard.health import Thresholds, fleet_alerts, parse_ts
from fleet.dashboard.state import Fleet

st.set_page_config(page_title="roadseg fleet", page_icon="🛣️", layout="wide",
                   menu_items={"About": "roadseg: semantic segmentation on vehicles, the fleet's view over MQTT."})
HEX = ["#%02x%02x%02x" % tuple(int(v) for v in PALETTE[i]) for i in range(len(CATEGORIES))]


@st.cache_resource
def get_fleet(host: str, port: int) -> Fleet:
    return Fleet(host, port)


def legend_html() -> str:
    items = "".join(
        f"<span style='margin-right:12px;white-space:nowrap'><span aria-hidden='true' style='display:inline-block;"
        f"width:14px;height:14px;background:rgb{tuple(int(v) for v in PALETTE[i])};border:1px solid #444;"
        f"vertical-align:middle'></span> {c}</span>" for i, c in enumerate(CATEGORIES))
    return f"<div role='list' aria-label='category colours'>{items}</div>"


def time_chart(df: pd.DataFrame, title: str, y_title: str, colors: list[str] | None = None):
    """Lines over the vehicles' own timestamps, axis in HH:MM:SS."""
    long = df.reset_index(names="time").melt("time", var_name="series", value_name="value")
    color = alt.Color("series:N", title=None, sort=list(df.columns),
                      scale=alt.Scale(domain=list(df.columns), range=colors) if colors else alt.Undefined)
    return (alt.Chart(long, title=title).mark_line(point=len(df) < 30)
            .encode(x=alt.X("time:T", title="time (UTC)", axis=alt.Axis(format="%H:%M:%S", labelAngle=0)),
                    y=alt.Y("value:Q", title=y_title), color=color,
                    tooltip=[alt.Tooltip("time:T", format="%H:%M:%S"), "series:N", "value:Q"])
            .properties(height=220))


def chart_with_table(df: pd.DataFrame, title: str, y_title: str, colors=None, key: str = ""):
    st.altair_chart(time_chart(df, title, y_title, colors), use_container_width=True)
    with st.expander(f"{title}: data table (last 30 rows)"):  # an HTML table: read by screen readers
        tail = df.tail(30).copy()
        tail.index = tail.index.strftime("%H:%M:%S")
        st.table(tail.rename_axis("time (UTC)").round(3))


def _times(items: list[dict]) -> pd.DatetimeIndex:
    return pd.to_datetime([dt.datetime.fromtimestamp(parse_ts(h.get("ts")) or 0, dt.timezone.utc) for h in items])


host = st.sidebar.text_input("MQTT broker host", os.environ.get("ROADSEG_DASH_MQTT_HOST", "127.0.0.1"))
port = int(st.sidebar.number_input("MQTT port", value=int(os.environ.get("ROADSEG_DASH_MQTT_PORT", "1883")), step=1))
api = st.sidebar.text_input("device API URL (overrides each vehicle's own)", os.environ.get("ROADSEG_DASH_DEVICE_API", ""))
page = st.sidebar.radio("page", ["Fleet", "Segment an image"])
fleet = get_fleet(host, port)
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
    st.caption(f"broker {host}:{port} — {'connected' if fleet.connected else 'connecting…'}")
    vehicles = fleet.view()
    if not vehicles:
        st.info("No vehicles yet: waiting for messages on roadseg/+/coverage, status, stats and snapshot.")
        return
    alerts = fleet_alerts(vehicles, time.time(), th)
    if alerts:
        for a in alerts:
            st.error(f"**{a.kind.replace('_', ' ')}** — {a.message}, since {a.since_text}")
    else:
        st.success(f"All {len(vehicles)} vehicles healthy.")
    rows = fleet.snapshot()
    for r in rows:
        r["live view"] = (f"{fleet.api_url(r['vehicle'], api)}/v1/stream.mjpg"
                          if fleet.api_url(r["vehicle"], api) else None)
    st.dataframe(pd.DataFrame(rows), hide_index=True, use_container_width=True,
                 column_config={"live view": st.column_config.LinkColumn("live view", display_text="open")})
    st.markdown(legend_html(), unsafe_allow_html=True)
    for v in vehicles:
        name = v["device_id"]
        st.subheader(f"{name} — {v['state']}")
        link = fleet.api_url(name, api)
        if link:
            st.markdown(f"Live view of {name}: [{link}/v1/stream.mjpg]({link}/v1/stream.mjpg) "
                        f"(a protected device hands out a signed link: POST {link}/v1/live-url)")
        last = v["stats"]
        if last:
            m = st.columns(6)
            fps = last.get("fps", {})
            m[0].metric("FPS / target", f"{fps.get('achieved', 0):.1f}/{fps.get('target', 0):g}")
            m[1].metric("dropped frames", last.get("dropped_frames"))
            m[2].metric("latency p99 ms", (last.get("latency_ms") or {}).get("p99"))
            temp = last.get("cpu_temp_c")
            m[3].metric("CPU °C", "n/a" if temp is None else f"{temp:.1f}")
            m[4].metric("MQTT queued", (last.get("mqtt") or {}).get("queued"))
            m[5].metric("camera", (last.get("camera") or {}).get("state", "?"))
        left, right = st.columns([2, 1])
        with left:
            hist = v["coverage"]
            if hist:
                df = pd.DataFrame([h["coverage"] for h in hist], index=_times(hist))[list(CATEGORIES)]
                chart_with_table(df, f"{name}: coverage", "fraction of the frame", HEX, key=f"cov-{name}")
            stats = v["stats_history"]
            if stats:
                fps = pd.DataFrame({"achieved FPS": [s["fps"]["achieved"] for s in stats],
                                    "target FPS": [s["fps"]["target"] for s in stats]}, index=_times(stats))
                chart_with_table(fps, f"{name}: frame rate", "FPS", ["#0072b2", "#999999"], key=f"fps-{name}")
                temps = [s.get("cpu_temp_c") for s in stats]
                if any(t is not None for t in temps):
                    chart_with_table(pd.DataFrame({"CPU °C": temps}, index=_times(stats)), f"{name}: CPU temperature",
                                     "°C", ["#d55e00"], key=f"temp-{name}")
        with right:
            if v["snapshot"]:
                age = time.time() - v["snapshot_at"]
                st.image(v["snapshot"], caption=f"{name}: latest snapshot over MQTT, received {age:.0f} s ago",
                         use_container_width=True)
            else:
                st.caption(f"No snapshot from {name} (roadseg-run --snapshot-interval S sends them).")


if page == "Fleet":
    st.title("roadseg fleet")
    fleet_view()
else:
    st.title("Segment an image on a vehicle")
    if not api:
        st.warning("Set the device API URL in the sidebar (roadseg-serve or roadseg-run --http).")
    up = st.file_uploader("JPEG or PNG image", type=["jpg", "jpeg", "png"])
    if up is not None and api:
        import httpx
        token = os.environ.get("ROADSEG_API_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        files = {"file": (up.name, up.getvalue(), up.type)}
        try:
            cov = httpx.post(f"{api}/v1/segment", files=files, headers=headers, timeout=30)
            mask = httpx.post(f"{api}/v1/segment?format=png&view=mask", files=files, headers=headers, timeout=30)
            cov.raise_for_status()
            mask.raise_for_status()
        except httpx.HTTPError as e:
            st.error(f"device API error: {e}")
        else:
            c1, c2 = st.columns(2)
            c1.image(up.getvalue(), caption="image")
            c2.image(mask.content, caption="segmentation mask")
            st.markdown(legend_html(), unsafe_allow_html=True)
            st.table(pd.DataFrame({"category": list(cov.json()["coverage"]),
                                   "coverage %": [round(100 * v, 1) for v in cov.json()["coverage"].values()]}))
