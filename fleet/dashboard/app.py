"""roadseg fleet dashboard (Streamlit).

    ROADSEG_DASH_MQTT_HOST=broker.local streamlit run fleet/dashboard/app.py

Pages: the fleet (each vehicle's online state, FPS, coverage over time, the
live view where its device API is reachable) and one-image segmentation
through a device API. Colours are the colour-blind-safe palette and every
colour has its category name beside it.
"""
import os

import pandas as pd
import streamlit as st

from fleet.dashboard.state import Fleet
from edge_runtime.labels import CATEGORIES, PALETTE

st.set_page_config(page_title="roadseg fleet", layout="wide")


@st.cache_resource
def get_fleet(host: str, port: int) -> Fleet:
    return Fleet(host, port)


def legend_html() -> str:
    items = "".join(
        f"<span style='margin-right:12px;white-space:nowrap'><span aria-hidden='true' style='display:inline-block;"
        f"width:14px;height:14px;background:rgb{tuple(int(v) for v in PALETTE[i])};border:1px solid #444;"
        f"vertical-align:middle'></span> {c}</span>" for i, c in enumerate(CATEGORIES))
    return f"<div role='list' aria-label='category colours'>{items}</div>"


host = st.sidebar.text_input("MQTT broker host", os.environ.get("ROADSEG_DASH_MQTT_HOST", "127.0.0.1"))
port = int(st.sidebar.number_input("MQTT port", value=int(os.environ.get("ROADSEG_DASH_MQTT_PORT", "1883")), step=1))
api = st.sidebar.text_input("device API URL (optional)", os.environ.get("ROADSEG_DASH_DEVICE_API", ""))
page = st.sidebar.radio("page", ["Fleet", "Segment an image"])
fleet = get_fleet(host, port)

auto = st.sidebar.checkbox("auto-refresh every 2 s", value=True)


@st.fragment(run_every=2 if auto else None)
def fleet_view():
    st.caption(f"broker {host}:{port} — {'connected' if fleet.connected else 'connecting…'}")
    rows = fleet.snapshot()
    if not rows:
        st.info("No vehicles yet: waiting for messages on roadseg/+/coverage, status and stats.")
        return
    st.dataframe(pd.DataFrame(rows), hide_index=True, use_container_width=True)
    st.markdown(legend_html(), unsafe_allow_html=True)
    for r in rows:
        hist = fleet.history(r["vehicle"])
        st.subheader(f"{r['vehicle']} — {r['state']}")
        if hist:
            df = pd.DataFrame([h["coverage"] for h in hist], index=pd.to_datetime([h["ts"] for h in hist]))
            st.line_chart(df, color=["#%02x%02x%02x" % tuple(int(v) for v in PALETTE[i])
                                     for i in range(len(CATEGORIES))])
        if api:
            st.markdown(f"Live view: [{api}/v1/stream.mjpg]({api}/v1/stream.mjpg)")


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
