"""Each page of the browser app in Streamlit's headless AppTest, on a real trained model and real photos."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import optuna
import pytest
import yaml
from streamlit.testing.v1 import AppTest

from signbridge.metadata import active_model, find_models, read_metadata
from signbridge.recognize import Recognizer
from signbridge.ui.jobs import list_jobs
from tests.conftest import REPO
from tests.ui.conftest import wait_for

PAGES = REPO / "signbridge" / "ui" / "views"


def page(name: str) -> AppTest:
    app = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=120)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def photo_with_a_hand(models_dir: Path) -> Path:
    """A training photo of the trained model in which the landmark cache found a hand."""
    metadata = read_metadata(find_models(models_dir)[0])
    cache = np.load(metadata["data"]["hyperparameters"]["landmarks_file"], allow_pickle=False)
    root = Path(metadata["data"]["root"])
    for path, present in zip(cache["paths"], cache["present"]):
        if present.any():
            return root / str(path)
    raise AssertionError("no photo with a hand in the cache")


def upload(path: Path) -> tuple[str, bytes, str]:
    return path.name, path.read_bytes(), "image/jpeg"


def test_predict_shows_the_recognizers_label_top_classes_and_says_when_no_hand(trained_models, app_settings,
                                                                                   tmp_path, hand_model):
    app_settings(trained_models)
    photo = photo_with_a_hand(trained_models)
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 127, np.uint8))
    app = page("predict")
    app.file_uploader[0].set_value([upload(photo), upload(blank), ("notes.jpg", b"not an image", "image/jpeg")])
    app.run()
    assert not app.exception, [e.value for e in app.exception]

    checkpoint = find_models(trained_models)[0].parent / read_metadata(find_models(trained_models)[0])["checkpoint"]
    with Recognizer(checkpoint, hand_model) as recognizer:
        expected = recognizer.predict(cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB))
    assert [s.value for s in app.success] == [f"Sign **{expected.label}** · {expected.probability:.1%}"]
    table = app.dataframe[0].value
    assert list(table["class"])[0] == expected.label and len(table) == 4  # 4 classes: all of them
    assert list(table["probability"]) == sorted(table["probability"], reverse=True)
    assert any("blank.png: no hand found" in w.value for w in app.warning)
    assert [e.value for e in app.error] == ["notes.jpg: not a readable image"]
    drawn = [image.proto.imgs[0].caption for image in app.get("image")]  # with the landmarks of a found hand
    assert drawn == [photo.name, "blank.png"]


def test_predict_from_the_camera(trained_models, app_settings):
    app_settings(trained_models)
    photo = photo_with_a_hand(trained_models)
    app = page("predict")
    assert not app.camera_input  # only when asked for: a browser asks the user's permission for the camera
    app.toggle[0].set_value(True).run()
    app.camera_input[0].set_value(("camera.jpg", photo.read_bytes(), "image/jpeg")).run()
    assert not app.exception, [e.value for e in app.exception]
    assert len(app.success) == 1 and app.success[0].value.startswith("Sign **")
    assert [image.proto.imgs[0].caption for image in app.get("image")] == ["camera.jpg"]


def test_predict_on_an_uploaded_video_with_a_sequence_model(app_settings, tmp_path, wlasl_subset, hand_model):
    """A sequence classifier trained through the CLI on real sign sequences; the page reads an uploaded real sign
    video: the clip's sign and top classes (those SequenceRecognizer gives), the wrists over time, frames with their
    landmarks, and one line for a file that is not a video."""
    from signbridge.cli import main
    from signbridge.recognize import SequenceRecognizer
    from tests.conftest import shared_dir

    models_dir = app_settings(tmp_path / "runs")
    cli = main(["fit", "--config", str(REPO / "configs" / "sign_sequences.yaml"), "--data.init_args.root",
                str(wlasl_subset), "--data.init_args.landmarks_file", str(tmp_path / "cache.npz"),
                "--data.init_args.batch_size", "8", "--trainer.max_epochs", "2", "--model.init_args.net.dim", "32",
                "--model.init_args.net.depth", "1", "--trainer.logger.init_args.save_dir", str(models_dir),
                "--trainer.enable_progress_bar", "false"])
    checkpoint = Path(cli.trainer.checkpoint_callback.best_model_path)
    video = sorted(shared_dir("data", "sign_sequences", "videos", "abdomen").glob("*.mp4"))[1]
    app = page("predict")
    assert "SequenceClassifier" in app.caption[0].value
    app.file_uploader[0].set_value([(video.name, video.read_bytes(), "video/mp4"),
                                    ("clip.mp4", b"not a video at all", "video/mp4")])
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    with SequenceRecognizer(checkpoint, hand_model) as recognizer:
        expected = recognizer.classify_video(video).clip
    assert [s.value for s in app.success] == [f"{video.name}: sign **{expected.label}** · {expected.probability:.1%}"]
    table = app.dataframe[0].value
    assert list(table["class"]) == [name for name, _ in expected.top5]
    assert len(app.get("vega_lite_chart")) == 1  # the wrists' paths over the frames
    captions = [image.proto.imgs[0].caption for image in app.get("image")]
    assert len(captions) == 4 and all(caption.startswith("frame ") for caption in captions)
    assert len(app.error) == 1 and app.error[0].value.startswith("clip.mp4: ")


def test_predict_without_models_says_where_to_train(app_settings, tmp_path):
    app_settings(tmp_path / "empty")
    app = page("predict")
    assert "No trained sign classifier" in app.info[0].value and not app.file_uploader


def test_models_lists_tested_model_activates_compares_and_shows_studies(trained_models, app_settings, tmp_path):
    models_dir = app_settings(tmp_path / "runs")
    shutil.copytree(trained_models, models_dir)
    run = find_models(models_dir)[0].parent.parent
    shutil.copytree(run, run.parent / "version_9")  # a second model to compare
    study_dir = models_dir / "search"
    study_dir.mkdir()
    study = optuna.create_study(storage=f"sqlite:///{study_dir / 'study.db'}", study_name="search",
                                direction="maximize", pruner=optuna.pruners.NopPruner())
    for value, pruned_at in [(0.9, None), (0.4, 2), (0.7, None)]:
        trial = study.ask({"model.init_args.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)})
        for epoch in range(pruned_at or 4):
            trial.report(value * (epoch + 1) / 4, epoch)
        if pruned_at:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, value)

    app = page("models")
    listing = app.dataframe[0].value
    assert len(listing) == 2 and set(listing["task"]) == {"LandmarkClassifier"}
    metadata = read_metadata(find_models(models_dir)[-1])
    shown = {m.label: m.value for m in app.metric}
    assert shown["test accuracy"] == f"{metadata['test']['metrics']['test_acc']:.4f}"
    assert len(app.get("image")) == 1  # the confusion matrix figure

    activate = next(b for b in app.button if b.label == "Activate")
    activate.click().run()
    assert active_model(models_dir).resolve() == find_models(models_dir)[-1].resolve()
    assert list(app.dataframe[0].value["active"]) == [False, True]

    compare = next(m for m in app.multiselect if m.label == "Models")
    assert len(compare.value) == 2 and len(app.get("vega_lite_chart")) >= 4

    trials = next(d.value for d in app.dataframe if "state" in d.value.columns)
    assert list(trials["state"]) == ["complete", "pruned", "complete"]
    assert list(trials["epochs"]) == [4, 2, 4] and "lr" in trials.columns
    assert any("Best trial 0" in s.value for s in app.success)


@pytest.mark.slow
def test_train_page_starts_a_fit_that_the_models_page_lists(app_settings, tmp_path, digits_subset, digits_cache):
    models_dir = app_settings(tmp_path / "runs")
    app = page("train")
    app.text_input(key="root").set_value("")
    app.button[0].click().run()  # the form's Start button, without a data root
    assert "give the data root" in app.error[0].value and not list_jobs(models_dir)

    app.selectbox(key="config").set_value("sign_landmarks.yaml")
    app.text_input(key="root").set_value(str(digits_subset))
    app.text_input(key="name").set_value("from the page")
    app.number_input(key="epochs").set_value(3)
    app.selectbox(key="accelerator").set_value("cpu")
    app.text_input(key="more").set_value(f"--data.init_args.landmarks_file {digits_cache} "
                                         "--data.init_args.batch_size 8 --trainer.enable_progress_bar false")
    app.button[0].click().run()
    assert not app.exception and "Started fit 'from_the_page'" in app.success[0].value
    job = list_jobs(models_dir)[0]
    finished = wait_for(job, ("finished", "failed", "lost"))
    assert finished.state == "finished", finished.log_tail(40)

    again = page("train")  # a reload finds the run, its curves and its model
    assert any("finished" in e.label for e in again.expander)
    assert any("Model written" in s.value for s in again.success)
    models = page("models")
    listing = models.dataframe[0].value
    assert list(listing["model"]) == ["from_the_page/version_0"] and listing["test_acc"].notna().all()
    assert json.loads(finished.model_metadata().read_text())["hyperparameters"]["num_classes"] == 4


@pytest.mark.slow
def test_train_page_runs_a_study_that_the_models_page_shows(app_settings, tmp_path, digits_subset, digits_cache):
    models_dir = app_settings(tmp_path / "runs")
    app = page("train")
    app.selectbox(key="config").set_value("sign_landmarks.yaml")
    app.text_input(key="root").set_value(str(digits_subset))
    app.radio(key="action").set_value("tune")
    app.selectbox(key="space").set_value("imbalance_grid_search.yaml")
    app.number_input(key="trials").set_value(2)
    app.number_input(key="epochs").set_value(2)
    app.text_input(key="more").set_value(f"--data.init_args.landmarks_file {digits_cache} --sampler random")
    app.button[0].click().run()
    assert not app.exception and "Started tune" in app.success[0].value
    job = list_jobs(models_dir)[0]
    step = job.spec["steps"][0]
    assert job.kind == "tune" and step["arguments"]["max_epochs"] == 2 and step["arguments"]["sampler"] == "random"
    finished = wait_for(job, ("finished", "failed", "lost"))
    assert finished.state == "finished", finished.log_tail(40)
    assert any(p.proto.text == "2 of 2 trials finished" for p in page("train").get("progress"))

    models = page("models")
    trials = next(d.value for d in models.dataframe if "state" in d.value.columns)
    assert len(trials) == 2 and set(trials["state"]) == {"complete"} and set(trials["epochs"]) == {2}
    assert {"lr", "loss", "sampling"} <= set(trials.columns)


def test_train_page_runs_an_uploaded_config(app_settings, tmp_path, digits_subset, digits_cache):
    models_dir = app_settings(tmp_path / "runs")
    recipe = yaml.safe_load((REPO / "configs" / "sign_landmarks.yaml").read_text())
    recipe["trainer"]["max_epochs"] = 2
    recipe["data"]["init_args"]["landmarks_file"] = str(digits_cache)
    app = page("train")
    app.file_uploader[0].set_value(("my_recipe.yaml", yaml.safe_dump(recipe).encode(), "application/x-yaml"))
    app.text_input(key="root").set_value(str(digits_subset))
    app.button[0].click().run()
    assert not app.exception and "Started fit 'my_recipe'" in app.success[0].value
    job = list_jobs(models_dir)[0]
    saved = models_dir / ".jobs" / "configs" / "my_recipe.yaml"
    assert yaml.safe_load(saved.read_text()) == recipe and str(saved) in job.spec["steps"][0]["configs"]
    finished = wait_for(job, ("finished", "failed", "lost"))
    assert finished.state == "finished", finished.log_tail(40)
    assert read_metadata(finished.model_metadata())["epochs"] == 2


def test_predict_over_class_names_typed_for_a_text_aligned_model(app_settings, tmp_path, wlasl_subset, hand_model):
    """A text-aligned sequence model (real gloss vectors) trained on 4 real signs; the page scores an uploaded real
    video over the names typed in, which it was not trained on, and says so when a name has no vector."""
    from signbridge.cli import main
    from tests.conftest import shared_dir

    models_dir = app_settings(tmp_path / "runs")
    vectors = shared_dir("data", "sign_sequences", "wlasl_gloss_vectors.txt")
    main(["fit", "--config", str(REPO / "configs" / "sign_sequences_text.yaml"), "--data.init_args.root",
          str(wlasl_subset), "--data.init_args.landmarks_file", str(tmp_path / "cache.npz"),
          "--model.init_args.text.vectors", str(vectors), "--data.init_args.batch_size", "8",
          "--trainer.max_epochs", "2", "--model.init_args.net.dim", "32", "--model.init_args.net.depth", "1",
          "--trainer.logger.init_args.save_dir", str(models_dir), "--trainer.enable_progress_bar", "false"])
    video = sorted(shared_dir("data", "sign_sequences", "videos", "abdomen").glob("*.mp4"))[1]
    app = page("predict")
    assert not app.info, [m.value for m in app.info]
    assert "TextAlignedSequenceClassifier" in app.caption[0].value
    app.text_input[0].set_value("mother, father, go")
    app.file_uploader[0].set_value([(video.name, video.read_bytes(), "video/mp4")])
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert set(app.dataframe[0].value["class"]) == {"mother", "father", "go"}
    assert app.success[0].value.split("**")[1] in {"mother", "father", "go"}
    app.text_input[0].set_value("mother, qwertyuiop")
    app.run()
    assert any("qwertyuiop" in error.value for error in app.error), [e.value for e in app.error]


def test_predict_reads_the_glosses_of_a_video_with_a_continuous_model(app_settings, tmp_path, wlasl_subset,
                                                                      hand_model):
    """A CTC model trained on sentences stitched from 4 real signs; the page writes the glosses and the sentence of an
    uploaded real video, those SentenceRecognizer reads."""
    from signbridge.cli import main
    from signbridge.recognize import SentenceRecognizer
    from tests.conftest import shared_dir

    models_dir = app_settings(tmp_path / "runs")
    cli = main(["fit", "--config", str(REPO / "configs" / "sign_sentences.yaml"), "--data.init_args.root",
                str(wlasl_subset), "--data.init_args.landmarks_file", str(tmp_path / "cache.npz"),
                "--data.init_args.sentences", "16", "--trainer.max_epochs", "1", "--model.init_args.net.dim", "32",
                "--model.init_args.net.depth", "1", "--model.init_args.net.num_heads", "2",
                "--trainer.logger.init_args.save_dir", str(models_dir), "--trainer.enable_progress_bar", "false"])
    video = sorted(shared_dir("data", "sign_sequences", "videos", "abdomen").glob("*.mp4"))[2]
    app = page("predict")
    assert "ContinuousSignRecognizer" in app.caption[0].value
    app.file_uploader[0].set_value([(video.name, video.read_bytes(), "video/mp4")])
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    with SentenceRecognizer(Path(cli.trainer.checkpoint_callback.best_model_path), hand_model) as recognizer:
        expected = recognizer.classify_video(video).clip
    assert [s.value for s in app.success] == [f"{video.name}: **{expected.sentence or '(no sign)'}**"]
    assert f"glosses: `{' '.join(expected.glosses) or '-'}`" in [m.value for m in app.markdown]
    assert len(app.get("vega_lite_chart")) == 1  # the wrists' paths over the frames
