"""The browser app of ``signbridge ui``: Train, Predict and Models pages (Streamlit)."""

from pathlib import Path

import streamlit as st

VIEWS = Path(__file__).parent / "views"  # not "pages": Streamlit would list that folder by itself

st.set_page_config(page_title="signbridge", page_icon=":material/sign_language:", layout="wide")
page = st.navigation([
    st.Page(VIEWS / "train.py", title="Train", icon=":material/model_training:"),
    st.Page(VIEWS / "predict.py", title="Predict", icon=":material/back_hand:", default=True),
    st.Page(VIEWS / "models.py", title="Models", icon=":material/leaderboard:"),
])
page.run()
