"""Config: YAML files load, defaults validate, bad fields give errors naming the field."""

from pathlib import Path

import pytest

from q_grasp.learning.config import ConfigError, ExperimentConfig

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"


@pytest.mark.parametrize("name", ["reacher.yaml", "reacher_joints_goal.yaml", "reacher_fast.yaml",
                                  "grasp.yaml", "grasp_plain.yaml", "grasp_clutter.yaml",
                                  "cartpole.yaml"])
def test_packaged_configs_load(name):
    cfg = ExperimentConfig.from_yaml(CONFIG_DIR / name)
    assert cfg.training.total_steps > 0


def test_defaults_validate_and_round_trip():
    cfg = ExperimentConfig()
    assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("data,match", [
    ({"dqn": {"gamma": 1.5}}, r"dqn\.gamma: must be in \[0, 1\], got 1\.5"),
    ({"dqn": {"gama": 0.9}}, r"dqn\.gama: unknown field"),
    ({"optimiser": {}}, r"optimiser: unknown field in top level \(unknown config fields"),
    ({"dqn": {"batch_size": "64"}}, r"dqn\.batch_size: expected an integer, got '64'"),
    ({"dqn": {"batch_size": 32.5}}, r"dqn\.batch_size: expected an integer"),
    ({"dqn": {"double_q": 1}}, r"dqn\.double_q: expected true or false"),
    ({"dqn": {"loss": "l1"}}, r"dqn\.loss: must be one of \[.huber., .mse., .bce.\], got .l1."),
    ({"buffer": {"capacity": 0}}, r"buffer\.capacity: must be >= 1, got 0"),
    ({"buffer": {"augment": {"translate_px": -1}}}, r"buffer\.augment\.translate_px"),
    ({"network": {"hidden_sizes": [64, "x"]}}, r"network\.hidden_sizes\[1\]: expected an int"),
    ({"exploration": {"end": 2.0}}, r"exploration\.end: must be in \[0, 1\]"),
    ({"training": {"train_freq": 0}}, r"training\.train_freq: must be >= 1"),
    ({"training": {"result": "final"}}, r"training\.result: must be last or best, got .final."),
    ({"training": {"result": "best"}}, r"training\.result: best needs training\.keep_best"),
    ({"buffer": {"her_k": 2, "n_steps": 3}}, r"buffer\.n_steps: must be 1 with hindsight"),
    ({"env": "CartPole-v1"}, r"env: expected a mapping of fields"),
])
def test_invalid_values_name_the_field(data, match):
    with pytest.raises(ConfigError, match=match):
        ExperimentConfig.from_dict(data)


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dqn: {gamma: [1, 2}\n")
    with pytest.raises(ConfigError, match="bad.yaml.*not valid YAML"):
        ExperimentConfig.from_yaml(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        ExperimentConfig.from_yaml(bad)
    bad.write_text("dqn:\n  tau: 0\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*dqn\.tau: must be in \(0, 1\]"):
        ExperimentConfig.from_yaml(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        ExperimentConfig.from_yaml(tmp_path / "missing.yaml")


def test_every_field_has_a_docstring():
    import ast
    import inspect

    from q_grasp.learning import config as mod

    tree = ast.parse(inspect.getsource(mod))
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name.endswith("Config")
                and n.name != "ConfigError"):
        body = cls.body
        for i, node in enumerate(body):
            if isinstance(node, ast.AnnAssign):
                nxt = body[i + 1] if i + 1 < len(body) else None
                assert isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant), \
                    f"{cls.name}.{node.target.id} has no docstring"
