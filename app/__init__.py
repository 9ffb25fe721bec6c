"""Helpers of the Streamlit app (streamlit_app.py): results and their byte-bounded store, figures,
model choice, the browser component, one X-ray's page section, and the start-up wrapper that
loads the model first.

Streamlit calls are confined to app.results (its shared caches), app.component and app.xray (page
section), so tests and benchmarks can use the rest directly.
"""
