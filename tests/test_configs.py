"""Every file in configs/ parses: recipes alone, partial configs on the recipe they extend, search spaces against
the config they search."""

import itertools

import pytest
import yaml

from signbridge.cli import main
from signbridge.lightning_cli import fit_config
from signbridge.tuning import check_params_exist, load_search_space
from tests.conftest import REPO

CONFIGS = REPO / "configs"
FILES = sorted(CONFIGS.rglob("*.yaml"))


def _is_search_space(path) -> bool:
    return path.stem.endswith("_search")


def _base_of(path) -> list[str]:
    """The recipe a partial config extends: named in an ``# extends: NAME`` first line, else the hybrid recipe."""
    first = path.read_text().splitlines()[0]
    name = first.removeprefix("# extends:").strip() if first.startswith("# extends:") else "sign_digits_hybrid.yaml"
    return ["--config", str(CONFIGS / name)]


@pytest.mark.parametrize("config", [f for f in FILES if not _is_search_space(f)],
                         ids=lambda p: str(p.relative_to(CONFIGS)))
def test_config_parses(config, tmp_path, capsys):
    (tmp_path / "data" / "a").mkdir(parents=True)
    complete = "class_path" in (yaml.safe_load(config.read_text()).get("model") or {})
    configs = [] if complete else _base_of(config)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *configs, "--config", str(config), "--data.init_args.root", str(tmp_path / "data"),
              "--print_config"])
    assert exit_info.value.code == 0
    assert "class_path: signbridge." in capsys.readouterr().out


@pytest.mark.parametrize("space", [f for f in FILES if _is_search_space(f)], ids=lambda p: p.name)
def test_search_space_parses_and_names_real_arguments(space, tmp_path):
    # the config searched: named in a "# searches: NAME" first line, else the search space's name without _search
    first = space.read_text().splitlines()[0]
    searched = CONFIGS / first.removeprefix("# searches:").strip() if first.startswith("# searches:") \
        else space.with_name(space.name.replace("_search", ""))
    parsed = load_search_space(space)
    assert parsed.params
    if space.name == "imbalance_grid_search.yaml":  # the reference project's grid
        assert len(list(itertools.product(*(p.grid_values() for p in parsed.params.values())))) == 72
    check_params_exist(parsed, fit_config(["--config", str(searched), "--data.init_args.root", str(tmp_path)]))
