"""The browser app (``signbridge ui``): Streamlit pages over the models folder, background jobs, and the readers
they share."""
