"""Fleet dashboard (Streamlit): ``streamlit run -m edge_runtime.dashboard`` or
``roadseg-dashboard``. The MQTT side lives in :mod:`edge_runtime.dashboard.fleet`."""
