"""Hyperparameter search over any signbridge config with Optuna (``signbridge tune``)."""

from __future__ import annotations

import itertools
import shutil
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightning as L
import yaml
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from .errors import InputError, check_range
from .files import check_writable, write_json_atomic
from .metadata import METADATA_FILE, read_metadata


@dataclass
class SearchParam:
    """One searched init argument: ``choices`` (categorical) or a ``low``..``high`` range (``step``, ``log``)."""

    name: str
    choices: list | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False

    def grid_values(self) -> list:
        """Every value a grid search tries: the choices, or the range in steps."""
        if self.choices is not None:
            return list(self.choices)
        if self.step is None:
            raise InputError(f"grid search needs choices or a step for '{self.name}'")
        low, high = self._range()
        count = int(round((high - low) / self.step)) + 1
        values = [low + i * self.step for i in range(count)]
        return [int(v) for v in values] if _all_int(low, high, self.step) else values

    def suggest(self, trial) -> Any:
        """The trial's value for this parameter (int ranges stay ints)."""
        if self.choices is not None:
            return trial.suggest_categorical(self.name, self.choices)
        low, high = self._range()
        if _all_int(low, high, self.step or 1):
            return trial.suggest_int(self.name, int(low), int(high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, low, high, step=self.step, log=self.log)

    def _range(self) -> tuple[float, float]:
        if self.low is None or self.high is None:
            raise InputError(f"search parameter '{self.name}' needs 'choices' or 'low' and 'high'")
        return self.low, self.high


def _all_int(*values) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


@dataclass
class SearchSpace:
    """A search-space file: the init arguments to search, the metric to optimise and the epoch budget."""

    params: dict[str, SearchParam]
    monitor: str = "val_acc"
    direction: Literal["maximize", "minimize"] = "maximize"
    max_epochs: int = 25


def load_search_space(path: str | Path) -> SearchSpace:
    """Read a search-space YAML (see ``configs/atk_cnn_search.yaml``); every mistake is a clear ``InputError``."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise InputError(f"{path}: cannot read the search space ({error})") from error
    if not isinstance(raw, dict) or not isinstance(raw.get("params"), dict) or not raw["params"]:
        raise InputError(f"{path}: a search space needs a non-empty 'params' mapping of init args to their values")
    unknown = set(raw) - {"params", "monitor", "direction", "max_epochs"}
    if unknown:
        raise InputError(f"{path}: unknown keys {sorted(unknown)} (allowed: params, monitor, direction, max_epochs)")
    params = {}
    for name, spec in raw["params"].items():
        where = f"{path}: parameter '{name}'"
        if not isinstance(spec, dict):
            raise InputError(f"{where}: give 'choices: [...]' or 'low' and 'high'")
        extra = set(spec) - {"choices", "low", "high", "step", "log"}
        if extra:
            raise InputError(f"{where}: unknown keys {sorted(extra)}")
        if "choices" in spec:
            if not isinstance(spec["choices"], list) or not spec["choices"]:
                raise InputError(f"{where}: 'choices' must be a non-empty list")
            if set(spec) - {"choices"}:
                raise InputError(f"{where}: 'choices' cannot be combined with a range")
            params[name] = SearchParam(name, choices=spec["choices"])
        elif {"low", "high"} <= set(spec):
            low, high = spec["low"], spec["high"]
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or low >= high:
                raise InputError(f"{where}: needs numbers low < high, got low={low!r} high={high!r}")
            step, log = spec.get("step"), bool(spec.get("log"))
            if log and low <= 0:
                raise InputError(f"{where}: a log range needs low > 0, got low={low!r}")
            if step is not None and (isinstance(step, bool) or not isinstance(step, int | float) or step <= 0):
                raise InputError(f"{where}: step must be a number above 0, got {step!r}")
            params[name] = SearchParam(name, low=low, high=high, step=step, log=log)
        else:
            raise InputError(f"{where}: give 'choices: [...]' or 'low' and 'high'")
    direction = raw.get("direction", "maximize")
    if direction not in ("maximize", "minimize"):
        raise InputError(f"{path}: direction must be maximize or minimize, got {direction!r}")
    return SearchSpace(params, raw.get("monitor", "val_acc"), direction, int(raw.get("max_epochs", 25)))


def check_params_exist(space: SearchSpace, config: dict) -> None:
    """An ``InputError`` for a search parameter that the resolved config does not have, or whose values are of
    another kind than the config's value (a string for a number, a range for a switch): found before the first
    trial, not when one fails."""
    for name, param in space.params.items():
        node = config
        for part in name.split("."):
            if not isinstance(node, dict) or part not in node:
                model = (config.get("model") or {}).get("class_path", "?")
                raise InputError(f"search parameter '{name}' is not an argument of the config (model: {model})")
            node = node[part]
        _check_kind(name, param, node)


def _check_kind(name: str, param: SearchParam, current: Any) -> None:
    if current is None or isinstance(current, dict | list):  # nothing to compare with (a default of None)
        return
    number = isinstance(current, int | float) and not isinstance(current, bool)
    values = param.choices if param.choices is not None else [param.low, param.high]
    for value in values:
        if isinstance(current, bool) and not isinstance(value, bool):
            raise InputError(f"search parameter '{name}': the config's value is a switch ({current}), got {value!r}")
        if number and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise InputError(f"search parameter '{name}': the config's value is a number ({current}), got {value!r}")
    if number and isinstance(current, int) and param.choices is None and not _all_int(param.low, param.high,
                                                                                     param.step or 1):
        raise InputError(f"search parameter '{name}': the config's value is an integer ({current}), got the range "
                         f"{param.low!r}..{param.high!r}")


# how often a trial whose process was killed or stopped is run again (continuing from its last.ckpt)
MAX_RETRIES = 3


def check_monitor(config: dict[str, Any], monitor: str, search_space: str | Path, run_dir: Path) -> None:
    """An ``InputError`` before the first trial when the search's ``monitor`` is not among what the config's task
    logs in one validation batch of an untrained model (a metric of training, ``train_*``, is left to
    ``MonitorCheck``, after the first epoch)."""
    from .lightning_cli import run, with_overrides

    if monitor.startswith("train_"):
        return
    check = run("validate", with_overrides(config, {
        "trainer.limit_val_batches": 1, "trainer.logger": False, "trainer.enable_progress_bar": False,
        "trainer.enable_model_summary": False, "trainer.default_root_dir": str(run_dir / ".monitor_check")}))
    if monitor not in check.trainer.callback_metrics:
        raise monitor_not_logged(search_space, monitor, check.trainer.callback_metrics)


def monitor_not_logged(search_space: str | Path, monitor: str, logged: Iterable[str]) -> InputError:
    """The error for a search ``monitor`` that is not among the ``logged`` metric names."""
    return InputError(f"{search_space}: monitor '{monitor}' is not a metric this task logs (it logs: "
                      f"{', '.join(sorted(logged)) or 'nothing'})")


class MonitorCheck(Callback):
    """Stops a trial with a clear error after its first epoch when the search's ``monitor`` is never logged.

    Without it a misspelt monitor trains every epoch of a trial unpruned and fails only when the result is read.
    """

    def __init__(self, monitor: str, search_space: str | Path):
        self.monitor = monitor
        self.search_space = search_space
        self.validated = self.checked = False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.validated = self.validated or not trainer.sanity_checking

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # after the first epoch that validated, so train_* and val_* metrics are both there
        if self.checked or not self.validated:
            return
        self.checked = True
        if self.monitor not in trainer.callback_metrics:
            raise monitor_not_logged(self.search_space, self.monitor, trainer.callback_metrics)


def check_storage_url(url: str) -> None:
    """An ``InputError`` now for a study storage that cannot work: a URL that does not parse, a database whose
    Python driver is not installed, a SQLite file in a folder that does not exist."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except Exception as error:  # noqa: BLE001  (sqlalchemy's ArgumentError, NoSuchModuleError, ...)
        raise InputError(f"{url}: not a database URL signbridge can use ({str(error).splitlines()[0]})") from error
    try:
        getattr(dialect, "import_dbapi", None) and dialect.import_dbapi()
    except ImportError as error:
        raise InputError(f"{url}: the Python driver of this database is not installed ({error}); install it, or "
                         "name an installed one in the URL (postgresql+psycopg2://...)") from error
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(parsed.database).parent
        if not folder.is_dir():
            raise InputError(f"{url}: the SQLite database's folder {folder} does not exist")


def _storage(url: str, heartbeat: int, run_dir: Path):
    import fcntl

    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}

    def connect():
        # a trial whose process died stops beating; the next worker marks it failed and retries its parameters once
        with warnings.catch_warnings():  # heartbeats are Optuna's documented way, still labelled experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat, grace_period=2 * heartbeat,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES),
            )

    # workers started together would all create the schema of a new database at once: take turns (a file lock on
    # this machine; for a server shared by machines, retry once the winner has created it)
    with open(run_dir / ".storage.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for attempt in range(5):
            try:
                return connect()
            except Exception as error:  # sqlalchemy/alembic errors of a concurrent schema creation, or no database
                if attempt == 4:
                    raise InputError(f"{url}: cannot open the study storage ({type(error).__name__}: "
                                     f"{str(error).splitlines()[0]})") from error
                time.sleep(1 + attempt)


def tune(
    config: dict[str, Any],
    search_space: Path,
    run_dir: Path,
    trials: int | None = None,
    timeout: float | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    sampler: Literal["tpe", "random", "grid"] = "tpe",
    pruner: Literal["hyperband", "median", "none"] | None = None,
    max_epochs: int | None = None,
    seed: int = 0,
    heartbeat: int = 30,
):
    """Search hyperparameters of any signbridge config with Optuna; rerun to resume. Several processes (one per GPU,
    or on several machines with ``storage``) may work on one study at once.

    Args:
        config: the fit config (``lightning_cli.load_config``); on the command line, ``--config FILE`` and any
            ``signbridge fit`` option (``--data.init_args.root DATA``).
        search_space: YAML naming init args and their choices or ranges (``configs/atk_cnn_search.yaml``).
        run_dir: folder for the trials (and the default SQLite study).
        trials: finished (complete or pruned) trials the whole study should have, so a rerun only adds what is
            missing (default 10; grid: the whole grid).
        timeout: stop starting trials after this many seconds.
        storage: database URL (default: ``sqlite:///RUN_DIR/study.db``).
        study_name: default: the run folder's name.
        sampler: ``tpe``, ``random`` or ``grid`` (every combination; ranges need a step).
        pruner: default: ``hyperband`` (``none`` for grid).
        max_epochs: epochs of a full trial (default: the space's).
        seed: the sampler's seed.
        heartbeat: seconds; a trial silent for twice this is failed and retried.

    Returns:
        the Optuna study.
    """
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    space = load_search_space(search_space)
    check_range("heartbeat", heartbeat, 1)
    run_dir = Path(run_dir)
    check_writable(run_dir, "folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    check_params_exist(space, config)
    max_epochs = max_epochs or space.max_epochs
    grid = {name: p.grid_values() for name, p in space.params.items()} if sampler == "grid" else None
    if grid is not None:  # the whole grid by default
        trials = trials or len(list(itertools.product(*grid.values())))
    trials = trials or 10
    storage_url = storage or f"sqlite:///{(run_dir / 'study.db').resolve()}"
    check_storage_url(storage_url)
    study = optuna.create_study(
        storage=_storage(storage_url, heartbeat, run_dir), study_name=study_name or run_dir.name,
        sampler=_sampler(sampler, seed, grid), pruner=_pruner(pruner or ("none" if sampler == "grid" else
                                                                         "hyperband"), max_epochs),
        direction=space.direction, load_if_exists=True,
    )
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    missing = trials - len(study.get_trials(deepcopy=False, states=finished))
    if missing > 0 and not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        check_monitor(config, space.monitor, search_space, run_dir)  # before a trial is spent on finding out
    if missing > 0:
        study.optimize(_objective(study, config, space, search_space, run_dir, max_epochs), n_trials=missing,
                       timeout=timeout, callbacks=[MaxTrialsCallback(trials, states=finished)])
    _keep_best_checkpoint(study, run_dir, storage_url)
    return study


def _sampler(sampler: str, seed: int, grid: dict[str, list] | None):
    import optuna

    if grid is not None:
        return optuna.samplers.GridSampler(grid, seed=seed)
    if sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _pruner(pruner: str, max_epochs: int):
    import optuna

    if pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs)
    if pruner == "median":
        return optuna.pruners.MedianPruner(n_warmup_steps=1)
    return optuna.pruners.NopPruner()


def _objective(study, config: dict[str, Any], space: SearchSpace, search_space: str | Path, run_dir: Path,
               max_epochs: int):
    """The function Optuna calls per trial: a fit of the config with the trial's values, in its own folder."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState
    from optuna_integration import PyTorchLightningPruningCallback

    from .lightning_cli import latest_checkpoint, run, run_folder_overrides, with_overrides

    def objective(trial) -> float:
        trial_dir = run_dir / f"trial_{trial.number:04d}"
        resume: dict[str, Any] = {}
        retried = RetryHeartbeatStaleTrialCallback.retried_trial_number(trial.storage.get_trial(trial._trial_id))
        if retried is not None and trial.user_attrs.get("run_dir"):
            # the retry of a trial whose process was killed (its heartbeat stopped): continue its run
            trial_dir = Path(trial.user_attrs["run_dir"])
            last = latest_checkpoint(trial_dir)
            resume = {"ckpt_path": str(last)} if last is not None else {}
        overrides = {name: param.suggest(trial) for name, param in space.params.items()}
        overrides.update({"trainer.max_epochs": max_epochs, "trainer.enable_progress_bar": False,
                          "trainer.enable_model_summary": False, **run_folder_overrides(config, trial_dir), **resume})
        trial.set_user_attr("run_dir", str(trial_dir))
        started = time.perf_counter()
        pruning = PyTorchLightningPruningCallback(trial, monitor=space.monitor)

        def record_time() -> None:
            trial.set_user_attr("seconds", time.perf_counter() - started)
            trial.set_user_attr("epochs", len(trial.storage.get_trial(trial._trial_id).intermediate_values))

        try:
            cli = run("fit", with_overrides(config, overrides),
                      callbacks=[MonitorCheck(space.monitor, search_space), pruning])
        except SystemExit:
            # SIGTERM or Ctrl-C stopped the fit (Lightning then exits): queue the trial again now, so the next start
            # continues its run from last.ckpt instead of waiting for its heartbeat to go stale
            record_time()
            study.tell(trial, state=TrialState.FAIL)
            RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)(study, study._storage.get_trial(trial._trial_id))
            raise
        except BaseException:
            record_time()
            raise
        record_time()
        return _trial_value(cli, trial, space.monitor)

    return objective


def _trial_value(cli, trial, monitor: str) -> float:
    """The trial's result: its best checkpoint's monitored value (the last logged one when they differ)."""
    checkpoint = cli.trainer.checkpoint_callback
    if not isinstance(checkpoint, ModelCheckpoint):
        raise InputError("tune needs a ModelCheckpoint callback in the trainer config (it keeps each trial's best)")
    trial.set_user_attr("checkpoint", checkpoint.best_model_path)
    if checkpoint.monitor == monitor and checkpoint.best_model_score is not None:
        return float(checkpoint.best_model_score)
    return float(cli.trainer.callback_metrics[monitor])


def _keep_best_checkpoint(study, run_dir: Path, storage_url: str) -> None:
    """Delete the checkpoints of finished trials other than the best; label the best one's metadata."""
    from optuna.trial import TrialState

    try:
        best = study.best_trial
    except ValueError:  # no complete trial yet
        return
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)):
        checkpoints = Path(trial.user_attrs.get("run_dir", "")) if trial.user_attrs.get("run_dir") else None
        if trial.number == best.number or checkpoints is None:
            continue
        for folder in checkpoints.rglob("checkpoints"):
            shutil.rmtree(folder, ignore_errors=True)
    checkpoint = best.user_attrs.get("checkpoint")
    if checkpoint and Path(checkpoint).name != "last.ckpt":  # the study is done: nothing is resumed from it
        Path(checkpoint).with_name("last.ckpt").unlink(missing_ok=True)
    if checkpoint and (Path(checkpoint).parent / METADATA_FILE).exists():
        path = Path(checkpoint).parent / METADATA_FILE
        metadata = read_metadata(path)
        states = [t.state.name for t in study.get_trials(deepcopy=False)]
        metadata["tune"] = {
            "study": study.study_name, "storage": storage_url, "trial": best.number, "value": best.value,
            "params": best.params, "trials": {state: states.count(state) for state in sorted(set(states))},
        }
        write_json_atomic(path, metadata)


def trials_table(study) -> str:
    """The trials of a study as a text table: state, value, epochs, seconds and parameters."""
    names = sorted({name for t in study.trials for name in t.params})
    short = [name.rsplit(".", 1)[-1] for name in names]
    header = f"{'#':>4} {'state':<9}{'value':>9}{'epochs':>7}{'seconds':>9}  " + "  ".join(f"{s:>9}" for s in short)
    lines = [header, "-" * len(header)]
    for t in study.trials:
        value = f"{t.value:.4f}" if t.value is not None else "-"
        cells = "  ".join(f"{_fmt(t.params.get(n)):>9}" for n in names)
        lines.append(f"{t.number:>4} {t.state.name:<9}{value:>9}{t.user_attrs.get('epochs', '-'):>7}"
                     f"{t.user_attrs.get('seconds', 0):>9.1f}  {cells}")
    return "\n".join(lines)


def _fmt(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def summary(study, run_dir: str | Path) -> str:
    """A few lines on a study: trials by state, epochs trained, the best trial and where its model is."""
    from optuna.trial import TrialState

    counts = {s.name: len(study.get_trials(deepcopy=False, states=(s,))) for s in TrialState}
    lines = [f"study '{study.study_name}': " + ", ".join(f"{n} {k.lower()}" for k, n in counts.items() if n)]
    try:
        best = study.best_trial
    except ValueError:
        return "\n".join(lines + ["no trial has completed yet"])
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    epochs = [t.user_attrs.get("epochs", 0) for t in finished]
    lines += [
        f"best trial {best.number}: value {best.value:.4f} with "
        + ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items()),
        f"best checkpoint: {best.user_attrs.get('checkpoint')}",
        f"epochs trained: {sum(epochs)} over {len(epochs)} finished trials",
        f"see the models with: signbridge models list {run_dir}",
    ]
    return "\n".join(lines)
