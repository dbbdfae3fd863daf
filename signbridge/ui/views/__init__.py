"""The pages of the browser app, run by Streamlit (``app.py``)."""
