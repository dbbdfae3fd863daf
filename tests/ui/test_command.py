"""``signbridge ui`` refuses in one line (exit code 2), before starting anything, when Streamlit is missing or the
models folder cannot be made."""

import importlib.util

import pytest

from signbridge.cli import console_main


def test_without_streamlit_it_says_which_extra_to_install(monkeypatch, capsys, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "streamlit" else real(name, *a))
    with pytest.raises(SystemExit) as exit_:
        console_main(["ui", "--models_dir", str(tmp_path / "runs")])
    assert exit_.value.code == 2
    assert 'pip install -e ".[ui]"' in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_models_folder_inside_a_file_is_one_line(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    with pytest.raises(SystemExit) as exit_:
        console_main(["ui", "--models_dir", str(tmp_path / "notes.txt" / "runs")])
    message = capsys.readouterr().err
    assert exit_.value.code == 2 and "notes.txt" in message and len(message.strip().splitlines()) == 1
