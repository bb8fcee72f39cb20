"""Fleet dashboard (Streamlit): ``roadseg-dashboard`` (or
``streamlit run fleet/dashboard/app.py``). The MQTT side lives in
:mod:`fleet.dashboard.state`."""
