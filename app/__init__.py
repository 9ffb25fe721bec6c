"""Helpers of the Streamlit app (streamlit_app.py): figures, model choice, the browser component.

Kept free of Streamlit calls (except app.component) so tests and benchmarks can use them directly.
"""
