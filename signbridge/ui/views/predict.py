"""Predict: the sign in uploaded photos (or a camera shot), with the detected hand drawn and the top-5 classes."""

from pathlib import Path

import cv2
import pandas as pd
import streamlit as st

from signbridge.errors import InputError
from signbridge.hands.sequence import part_slices
from signbridge.metadata import checkpoint_of
from signbridge.recognize import draw, draw_points
from signbridge.ui.common import PHOTO_TYPES, VIDEO_TYPES, SharedRecognizer, decode_photo, settings
from signbridge.ui.runs import models_frame


@st.cache_resource(max_entries=3, show_spinner="Loading the model and the hand detector…",
                   on_release=SharedRecognizer.close)  # a model dropped from the cache closes its detector
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


def show_top5(where, top5: list[tuple[str, float]]) -> None:
    """The five most likely classes as a table with probability bars."""
    table = pd.DataFrame({"class": [name for name, _ in top5], "probability": [p for _, p in top5]})
    where.dataframe(table, hide_index=True, column_config={
        "probability": st.column_config.ProgressColumn("probability", min_value=0.0, max_value=1.0, format="%.3f")})


if model.reads_videos:  # a sequence model: the sign of a whole video, and its sliding windows (or its glosses)
    classes = None
    if model.scores_any_names:  # a text-aligned model names any sign whose name has an embedding
        typed = st.text_input("Classes", placeholder="e.g. mother, father, go, walk (empty: the trained classes)",
                              help="comma-separated sign names; new names need the vectors file or text model the "
                                   "model was trained with")
        classes = [name.strip() for name in typed.split(",") if name.strip()] or None
    videos = st.file_uploader("Videos", type=VIDEO_TYPES, accept_multiple_files=True) or []
    parts = model.recognizer.parts  # type: ignore[union-attr]
    for video in videos:
        st.divider()
        try:
            result = model.classify_video(video.name, video.getvalue(), classes)
        except InputError as error:
            st.error(str(error))
            continue
        clip = result.clip
        if clip.label is None:
            st.warning(f"{video.name}: no hand found in any frame, so the sign cannot be read.")
            continue
        scores, motion = st.columns([1, 1])
        if model.reads_sentences:  # continuous signing: the glosses of the whole video, and its sentence
            st.success(f"{video.name}: **{clip.sentence or '(no sign)'}**")
            scores.markdown(f"glosses: `{' '.join(clip.glosses) or '-'}`")
        else:
            st.success(f"{video.name}: sign **{clip.label}** · {clip.probability:.1%}")
            show_top5(scores, clip.top5)
        found = result.present.any(1)
        scores.caption(f"{len(result.points)} frames at {result.fps:.0f} fps · landmarks found in {found.mean():.0%} "
                       f"· {clip.timings_ms.get('landmarks', 0.0):.0f} ms per frame")
        # where the wrists go over time (x, y in the frame; gaps where a hand was not found)
        columns = {}
        for name in ("left_hand", "right_hand"):
            if name in parts:
                wrist = part_slices(parts)[name].start  # the hand's point 0
                seen = result.present[:, parts.index(name)]
                for axis, label in ((0, "x"), (1, "y")):
                    values = result.points[:, wrist, axis].astype(float)
                    values[~seen] = float("nan")
                    columns[f"{name.replace('_', ' ')} {label}"] = values
        motion.line_chart(pd.DataFrame(columns), x_label="frame", y_label="wrist position (share of the frame)")
        strip = st.columns(max(1, len(result.frames)))
        for column, (index, frame) in zip(strip, sorted(result.frames.items())):
            column.image(draw_points(frame, result.points[index], result.present[index], parts),
                         caption=f"frame {index}")
        if result.windows and not model.reads_sentences:
            st.dataframe(pd.DataFrame([{"last frame": w.last_frame, "sign": w.label, "probability": w.probability}
                                       for w in result.windows]), hide_index=True)
    st.stop()

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
    show_top5(scores, [(model.recognizer.classes[i], float(result.probabilities[i])) for i in top])
    scores.caption(f"hands found: {hands} · {result.timings_ms.get('total', 0.0):.0f} ms")
