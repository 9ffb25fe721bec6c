"""Helpers of the Streamlit app (streamlit_app.py): results and their byte-bounded store, figures,
model choice, the browser component, and the start-up wrapper that loads the model first.

Streamlit calls are confined to app.results (its shared caches) and app.component, so tests and
benchmarks can use the rest directly.
"""
