"""Helpers of the Streamlit app (streamlit_app.py): results and their byte-bounded store, figures,
model choice, the browser component, one X-ray's page section, the zip streamed from the app's
own route (app.download, served by app.asgi), and the start-up wrapper that loads the model first.

Streamlit calls are confined to app.results (its shared caches), app.component, app.xray (page
section) and app.download (the session's zip offer), so tests and benchmarks can use the rest
directly.
"""
