"""Predict: the sign in uploaded photos (or a camera shot), with the detected hand drawn and the top-5 classes."""

from pathlib import Path

import cv2
import pandas as pd
import streamlit as st

from signbridge.errors import InputError
from signbridge.metadata import checkpoint_of
from signbridge.recognize import draw
from signbridge.ui.common import PHOTO_TYPES, SharedRecognizer, decode_photo, settings
from signbridge.ui.runs import models_frame


@st.cache_resource(max_entries=3, show_spinner="Loading the model and the hand detector…")
def recognizer(model: str, modified: float) -> SharedRecognizer:
    """The model loaded once for all sessions (``modified`` is in the key: a retrained file is loaded again)."""
    return SharedRecognizer(Path(model))


st.title("Predict")
folders = settings()
models = models_frame(folders.models_dir)
models = models[models["predicts_signs"].astype(bool)]
if models.empty:
    st.info(f"No trained sign classifier in {folders.models_dir}: train one on the Train page, or start the app "
            "with --models_dir pointing at your runs.")
    st.stop()

labels = list(models["model"])
active = [i for i, is_active in enumerate(models["active"]) if is_active]
choice = st.selectbox("Model", labels, index=active[0] if active else len(labels) - 1,
                      help="the active model is chosen first (Models page: Activate)")
row = models.iloc[labels.index(choice)]
try:
    checkpoint = checkpoint_of(Path(row["path"]))
    model = recognizer(str(checkpoint), checkpoint.stat().st_mtime)
except InputError as error:
    st.error(str(error))
    st.stop()
reads = ", ".join(spec.name for spec in model.recognizer.contract.inputs)
st.caption(f"{row['task']} · {len(model.recognizer.classes)} classes · reads {reads} · {checkpoint}")

uploads = list(st.file_uploader("Photos", type=PHOTO_TYPES, accept_multiple_files=True) or [])
if st.toggle("Use the camera"):
    shot = st.camera_input("Take a photo")
    if shot is not None:
        uploads.append(shot)

for upload in uploads:
    st.divider()
    try:
        frame = decode_photo(upload.name, upload.getvalue())
    except InputError as error:
        st.error(str(error))
        continue
    result = model.predict(frame)
    picture, scores = st.columns([1, 1])
    scale = max(1.0, 480 / max(frame.shape[:2]))  # small photos are enlarged, so the drawn hand can be seen
    shown = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC) if scale > 1 else frame
    picture.image(cv2.cvtColor(draw(shown, result), cv2.COLOR_BGR2RGB), caption=upload.name)
    hands = int(result.present.sum())
    if result.label is None:
        scores.warning(f"{upload.name}: no hand found. This model reads hand landmarks only, so it cannot classify "
                       "this photo; try one where the hand is fully visible.")
        continue
    scores.success(f"Sign **{result.label}** · {result.probability:.1%}")
    if not hands:
        scores.info("No hand found: classified from the image alone.")
    top = result.probabilities.argsort()[::-1][:5]
    table = pd.DataFrame({"class": [model.recognizer.classes[i] for i in top],
                          "probability": [float(result.probabilities[i]) for i in top]})
    scores.dataframe(table, hide_index=True, column_config={
        "probability": st.column_config.ProgressColumn("probability", min_value=0.0, max_value=1.0, format="%.3f")})
    scores.caption(f"hands found: {hands} · {result.timings_ms.get('total', 0.0):.0f} ms")
