"""The browser app (``signbridge ui``): Streamlit pages over the models folder, background jobs, and the readers
they share."""

from __future__ import annotations


def serve(models_dir: str = "runs", configs_dir: str = "configs", port: int = 8501,
          address: str = "localhost") -> int:
    """A browser app to train (fit or tune in the background), predict on photos and compare the models of a models
    folder. Open the address it prints; Ctrl-C stops the app (runs started from it go on).

    Args:
        models_dir: the models folder: runs, studies and jobs.
        configs_dir: configs offered on the Train page.
        port: the port to listen on.
        address: interface to listen on (0.0.0.0: every interface, e.g. on a remote GPU machine).

    Returns:
        Streamlit's exit code.
    """
    import importlib.util
    import os
    import subprocess
    import sys
    from pathlib import Path

    from ..errors import InputError
    from ..files import check_writable
    from .common import CONFIGS_DIR_VARIABLE, MODELS_DIR_VARIABLE

    if importlib.util.find_spec("streamlit") is None:
        raise InputError("signbridge ui needs Streamlit: pip install -e \".[ui]\"")
    folder = Path(models_dir)
    check_writable(folder, "folder")  # the app writes its jobs and the active model there
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, MODELS_DIR_VARIABLE: str(folder.resolve()),
           CONFIGS_DIR_VARIABLE: str(Path(configs_dir).resolve())}
    app = Path(__file__).parent / "app.py"
    command = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port),
               "--server.address", address, "--server.headless", "true",
               "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal"]
    print(f"signbridge ui: models in {folder.resolve()}, http://{address}:{port}", flush=True)
    try:
        return subprocess.call(command, env=env)
    except KeyboardInterrupt:
        return 0
