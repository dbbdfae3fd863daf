"""``signbridge cv`` and ``signbridge ensemble``: repeated fits of one config through the real CLI, on the landmarks
of real Sign Language Digits photos."""

import json

from signbridge.cli import main
from signbridge.data import LandmarkDataModule
from tests.tasks.test_landmark_cli import _args


def test_cross_validation_tests_every_fold_once_and_a_rerun_skips_them(tmp_path, digits_subset, digits_cache, capsys):
    args = _args(tmp_path, digits_subset, digits_cache, "--trainer.max_epochs", "2")
    assert main(["cv", "--folds", "3", "--run_dir", str(tmp_path / "cv"), *args]) == 0
    rows = [json.loads(line) for line in (tmp_path / "cv" / "results.jsonl").read_text().splitlines()]
    assert [row["fold"] for row in rows] == [0, 1, 2]
    assert all(0 <= row["test_acc"] <= 1 and "test_recall_min" in row for row in rows)
    assert len({row["checkpoint"] for row in rows}) == 3  # three separate runs
    assert "mean ± std over 3 folds" in capsys.readouterr().out
    # each fold's test split is the fold of the data module's k-fold split: disjoint, all photos tested once
    tested = []
    for fold in range(3):
        data = LandmarkDataModule(str(digits_subset), landmarks_file=str(digits_cache), num_folds=3, fold=fold)
        data.prepare_data()
        data.setup("test")
        tested += list(data.datasets["test"].paths)
    assert len(tested) == len(set(tested)) == 48
    main(["cv", "--folds", "3", "--run_dir", str(tmp_path / "cv"), *args])
    assert len((tmp_path / "cv" / "results.jsonl").read_text().splitlines()) == 3


def test_ensemble_command_trains_the_seeds_and_tests_their_ensemble(tmp_path, digits_subset, digits_cache, capsys):
    args = _args(tmp_path, digits_subset, digits_cache, "--trainer.max_epochs", "2")
    assert main(["ensemble", "--seeds", "2", "--run_dir", str(tmp_path / "ens"), *args]) == 0
    rows = [json.loads(line) for line in (tmp_path / "ens" / "results.jsonl").read_text().splitlines()]
    assert [row["run"] for row in rows] == ["seed0", "seed1", "ensemble of 2"]
    assert rows[2]["members"] == [rows[0]["checkpoint"], rows[1]["checkpoint"]]
    assert rows[0]["checkpoint"] != rows[1]["checkpoint"]
    assert 0 <= rows[2]["test_acc"] <= 1
    assert "single models (2 seeds)" in capsys.readouterr().out
