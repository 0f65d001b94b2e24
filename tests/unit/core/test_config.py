"""Configuration: precedence, path resolution, and errors that name the file, line and key."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from conveyor.core import env
from conveyor.core.config import load_config
from conveyor.core.errors import ConfigError, ExitCode

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in env.__all__:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    project = tmp_path / "churn-project"
    project.mkdir()
    return project.resolve()


def write_config(root: Path, text: str) -> Path:
    path = root / "conveyor.yaml"
    path.write_text(text)
    return path


def config_error(root: Path, text: str, **kwargs: Any) -> ConfigError:
    write_config(root, text)
    with pytest.raises(ConfigError) as info:
        load_config(root, **kwargs)
    assert info.value.exit_code == ExitCode.USAGE
    return info.value


# ------------------------------------------------------------------ precedence

FILE_TEXT = """\
store: sqlite:///from-file.db
artifacts: from-file-artifacts
serve:
  port: 9001
"""


def test_defaults_without_a_file(root: Path) -> None:
    config = load_config(root)
    assert config.root == root
    assert config.project == "churn-project"
    assert config.store == f"sqlite:///{root / '.conveyor' / 'metadata.db'}"
    assert config.artifacts == str(root / ".conveyor" / "artifacts")
    assert config.serve.port == 8080
    assert config.serve.host == "127.0.0.1"
    assert config.policies is None
    assert config.model is None


@pytest.mark.parametrize("layer", ["default", "file", "env", "flag"])
def test_precedence_flag_over_env_over_file_over_default(
    layer: str, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = {
        "default": (f"sqlite:///{root}/.conveyor/metadata.db", f"{root}/.conveyor/artifacts", 8080),
        "file": (f"sqlite:///{root}/from-file.db", f"{root}/from-file-artifacts", 9001),
        "env": ("postgresql+psycopg://env@db/conveyor", "s3://env-bucket/artifacts", 9002),
        "flag": (f"sqlite:///{root}/from-flag.db", f"{root}/from-flag-artifacts", 9003),
    }
    layers = list(expected)
    if layers.index(layer) >= layers.index("file"):
        write_config(root, FILE_TEXT)
    if layers.index(layer) >= layers.index("env"):
        monkeypatch.setenv(env.CONVEYOR_STORE, "postgresql+psycopg://env@db/conveyor")
        monkeypatch.setenv(env.CONVEYOR_ARTIFACTS, "s3://env-bucket/artifacts")
        monkeypatch.setenv(env.CONVEYOR_PORT, "9002")
    overrides: dict[str, Any] = {"store": None, "artifacts": None, "port": None}
    if layer == "flag":
        overrides = {"store": "from-flag.db", "artifacts": "from-flag-artifacts", "port": 9003}

    config = load_config(root, overrides)

    assert (config.store, config.artifacts, config.serve.port) == expected[layer]


def test_env_overrides_only_what_it_sets(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(root, FILE_TEXT)
    monkeypatch.setenv(env.CONVEYOR_PORT, "9002")
    config = load_config(root)
    assert config.serve.port == 9002
    assert config.store == f"sqlite:///{root}/from-file.db"


def test_host_and_poll_interval_come_from_the_environment(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(env.CONVEYOR_HOST, "0.0.0.0")
    monkeypatch.setenv(env.CONVEYOR_POLL_INTERVAL, "2.5")
    config = load_config(root)
    assert (config.serve.host, config.serve.poll_interval) == ("0.0.0.0", 2.5)


# ------------------------------------------------------------------ paths


@pytest.mark.parametrize(
    ("store", "expected"),
    [
        ("sqlite:///state/m.db", "sqlite:///{root}/state/m.db"),
        ("state/m.db", "sqlite:///{root}/state/m.db"),
        ("sqlite:///../shared/m.db", "sqlite:///{parent}/shared/m.db"),
        ("sqlite:////abs/m.db", "sqlite:////abs/m.db"),
        ("postgresql+psycopg://u@db:5432/c", "postgresql+psycopg://u@db:5432/c"),
    ],
)
def test_store_paths_are_relative_to_the_project_not_the_shell(
    store: str, expected: str, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(root, f"store: {store}\n")
    sub = root / "src" / "deep"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    config = load_config()  # found by walking up from the current folder
    assert config.root == root
    assert config.store == expected.format(root=root, parent=root.parent)


@pytest.mark.parametrize(
    ("artifacts", "expected"),
    [
        ("arts", "{root}/arts"),
        ("file://arts", "{root}/arts"),
        ("/abs/arts", "/abs/arts"),
        ("s3://bucket/prefix", "s3://bucket/prefix"),
    ],
)
def test_artifact_locations(artifacts: str, expected: str, root: Path) -> None:
    write_config(root, f"artifacts: {artifacts}\n")
    assert load_config(root).artifacts == expected.format(root=root)


def test_policies_file_is_found_by_default(root: Path) -> None:
    assert load_config(root).policies is None
    (root / "policies.yaml").write_text("{}\n")
    assert load_config(root).policies == root / "policies.yaml"


def test_conveyor_config_points_to_a_file_elsewhere(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "custom.yaml").write_text("project: from-env-file\n")
    monkeypatch.setenv(env.CONVEYOR_CONFIG, str(other / "custom.yaml"))
    config = load_config(root)
    assert config.project == "from-env-file"
    assert config.root == other.resolve()


def test_conveyor_project_dir_sets_the_root(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(root, "project: found\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(env.CONVEYOR_PROJECT_DIR, str(root))
    assert load_config().project == "found"


def test_empty_file_means_defaults(root: Path) -> None:
    write_config(root, "# nothing yet\n")
    assert load_config(root).serve.port == 8080


# ------------------------------------------------------------------ errors


def test_unknown_key_names_its_line_and_the_known_keys(root: Path) -> None:
    err = config_error(root, "project: churn\nstore: m.db\nartefacts: arts\n")
    assert err.message == "conveyor.yaml:3: artefacts: unknown key"
    assert err.hint is not None
    assert err.hint.startswith("known keys here: ")
    known = err.hint.removeprefix("known keys here: ").split(", ")
    assert "artifacts" in known
    assert known == sorted(known)


def test_misspelt_nested_key_is_reported_before_the_missing_one(root: Path) -> None:
    err = config_error(root, "project: churn\nmodel:\n  name: churn\n  stpe: train\n")
    assert err.message == "conveyor.yaml:4: model.stpe: unknown key"
    assert err.hint == "known keys here: description, metrics, name, step"


def test_missing_nested_key_says_what_to_add(root: Path) -> None:
    err = config_error(root, "project: churn\nmodel:\n  name: churn\n")
    assert err.message.startswith("conveyor.yaml:2: model.step: ")
    assert "required" in err.message.lower()
    assert err.hint == "add `step:` under `model`"


def test_invalid_yaml_reports_its_line(root: Path) -> None:
    err = config_error(root, "project: churn\nserve:\n  port: 80\n   host: x\n")
    assert err.message.startswith("conveyor.yaml:4: not valid YAML (")


@pytest.mark.parametrize(
    ("text", "where", "phrase"),
    [
        ("serve:\n  host: h\n  port: eighty\n", "conveyor.yaml:3: serve.port: ", "integer"),
        ("serve:\n  port: 70000\n", "conveyor.yaml:2: serve.port: ", "65535"),
        ("params: [1, 2]\n", "conveyor.yaml:1: params: ", "dictionary"),
        ("pipeline: not a ref\n", "conveyor.yaml:1: pipeline: ", "pattern"),
        (
            "serve:\n  models:\n    - a\n    - {b: 1}\n",
            "conveyor.yaml:4: serve.models.1: ",
            "string",
        ),
    ],
)
def test_wrong_type_names_line_key_and_problem(
    text: str, where: str, phrase: str, root: Path
) -> None:
    err = config_error(root, text)
    assert err.message.startswith(where)
    assert phrase in err.message


def test_a_list_at_the_top_level_is_refused(root: Path) -> None:
    err = config_error(root, "- store\n- artifacts\n")
    assert "must be a mapping" in err.message


def test_conveyor_config_pointing_to_a_missing_file(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = root / "nope.yaml"
    monkeypatch.setenv(env.CONVEYOR_CONFIG, str(missing))
    with pytest.raises(ConfigError) as info:
        load_config(root)
    assert info.value.message == f"CONVEYOR_CONFIG points to {missing}, which does not exist"
    assert info.value.hint is not None


@pytest.mark.parametrize(
    ("var", "value"),
    [(env.CONVEYOR_PORT, "eighty"), (env.CONVEYOR_PORT, "80.5"), (env.CONVEYOR_POLL_INTERVAL, "x")],
)
def test_number_variable_that_is_not_a_number(
    var: str, value: str, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_config(root)
    assert info.value.message == f"{var}={value!r} is not a number"
    assert info.value.hint == f"set {var} to a number"


def test_port_out_of_range_from_the_environment(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(env.CONVEYOR_PORT, "70000")
    with pytest.raises(ConfigError, match=r"invalid setting serve\.port"):
        load_config(root)


def test_unreadable_file(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A folder where the file should be cannot be read even by root (tests run as root in CI,
    # where a permission bit would not stop the read).
    (root / "elsewhere").mkdir()
    monkeypatch.setenv("CONVEYOR_CONFIG", str(root / "elsewhere"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(root)
    monkeypatch.delenv("CONVEYOR_CONFIG")
    (root / "conveyor.yaml").write_bytes(b"project: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_config(root)
