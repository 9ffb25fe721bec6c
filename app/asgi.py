"""The app as ``make run`` serves it: streamlit_app.py on Streamlit's server, plus the route that
streams each session's results zip (app.download).

    streamlit run app/asgi.py [streamlit options]     # what app.serve runs
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st
from streamlit import config

from app import download

PAGE = Path(__file__).resolve().parents[1] / "streamlit_app.py"

app = st.App(PAGE, routes=[download.route(config.get_option("server.baseUrlPath"))])
