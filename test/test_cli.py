"""CLI smoke runs (train / eval / plot on a tiny budget) and clear errors on bad input."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from q_grasp.cli import main

torch.set_num_threads(1)

TINY = ["--set", "training.learning_starts=50", "--set", "training.log_interval=100",
        "--set", "training.eval_interval=0", "--set", "training.final_eval_episodes=2",
        "--set", "network.hidden_sizes=[16]", "--set", "dqn.batch_size=16",
        "--set", "training.train_freq=1", "--set", "training.gradient_steps=1"]


def test_train_eval_plot_smoke(tmp_path, capsys):
    out = tmp_path / "cp"
    assert main(["train", "--task", "CartPole-v1", "--seed", "0", "--steps", "200",
                 "--out", str(out), *TINY]) == 0
    text = capsys.readouterr().out
    assert "step 200/200" in text and "greedy eval" in text and "checkpoint:" in text
    for name in ("model.safetensors", "progress.csv", "episodes.csv", "eval.json",
                 "plots.png", "config.yaml", "replay.safetensors"):
        assert (out / name).is_file(), name
    assert any((out / "tb").iterdir())

    assert main(["eval", "--checkpoint", str(out / "model.safetensors"), "--episodes", "3",
                 "--json", str(tmp_path / "e.json")]) == 0
    text = capsys.readouterr().out
    assert "3 episodes: mean return" in text and "95% CI" in text
    assert (tmp_path / "e.json").is_file()

    assert main(["train", "--resume", str(out / "model.safetensors"), "--steps", "300",
                 "--no-plot", "--quiet"]) == 0
    assert "greedy eval" in capsys.readouterr().out

    png = tmp_path / "cmp.png"
    assert main(["plot", str(out), "--out", str(png)]) == 0
    assert png.stat().st_size > 1000


def test_reacher_train_and_eval_with_gif(tmp_path, capsys):
    pytest.importorskip("q_grasp.envs.reacher")
    out = tmp_path / "r"
    assert main(["train", "--task", "reacher", "--steps", "150", "--out", str(out), "--quiet",
                 "--no-plot", "--set", "training.final_eval_episodes=1", *TINY]) == 0
    gif = tmp_path / "reacher.gif"
    assert main(["eval", "--checkpoint", str(out / "model.safetensors"), "--episodes", "1",
                 "--video", str(gif), "--max-frames", "5"]) == 0
    text = capsys.readouterr().out
    assert "success rate" in text and "video:" in text
    assert gif.stat().st_size > 0


def test_multi_seed_run_writes_seed_folders_and_summary(tmp_path, capsys):
    out = tmp_path / "ms"
    assert main(["train", "--task", "cartpole", "--seeds", "0,1", "--steps", "120", "--out",
                 str(out), "--quiet", *TINY]) == 0
    assert (out / "seed_0" / "model.safetensors").is_file()
    assert (out / "seed_1" / "model.safetensors").is_file()
    assert (out / "summary.json").is_file() and (out / "plots.png").is_file()
    assert "median over seeds [0, 1]" in capsys.readouterr().out


@pytest.mark.parametrize("argv,match", [
    (["train", "--task", "NoSuchEnv-v9", "--steps", "10"], "unknown task 'NoSuchEnv-v9'"),
    (["train", "--task", "cartpole", "--set", "dqn.gamma=2"], r"dqn\.gamma: must be in"),
    (["train", "--task", "cartpole", "--set", "gamma=2"], "expected section.field=value"),
    (["train", "--task", "cartpole", "--seeds", "0,x"], "--seeds: expected"),
    (["eval", "--checkpoint", "missing.safetensors"], "no such file"),
    (["eval", "--checkpoint", "missing.safetensors", "--epsilon", "1.5"],
     r"--epsilon: must be in \[0, 1\]"),
    (["plot", "nowhere", "--out", "x.png"], "holds no progress.csv"),
])
def test_bad_input_gives_one_clear_error(argv, match, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
    import re

    assert re.search(match, err), err


def test_bad_config_file_and_corrupt_checkpoint(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dqn:\n  batch_size: lots\n")
    assert main(["train", "--config", str(cfg)]) == 2
    assert "dqn.batch_size: expected an integer, got 'lots'" in capsys.readouterr().err
    bad = tmp_path / "m.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    assert main(["eval", "--checkpoint", str(bad)]) == 2
    assert "not a readable safetensors file" in capsys.readouterr().err


def test_eval_on_another_object_set(tmp_path, capsys, monkeypatch):
    out = tmp_path / "g"
    assert main(["train", "--task", "grasp", "--steps", "4", "--out", str(out), "--quiet",
                 "--no-plot", "--set", "env.kwargs.image_size=[16,16]",
                 "--set", "env.kwargs.num_rotations=2", "--set", "training.learning_starts=2",
                 "--set", "training.final_eval_episodes=1", "--set", "dqn.batch_size=2"]) == 0
    ckpt = str(out / "model.safetensors")
    capsys.readouterr()
    import q_grasp.learning.trainer as trainer

    seen, smoothing = [], []
    real = trainer.evaluate

    def spy(env, actor, episodes, **kwargs):
        inner = env.unwrapped
        original_spawn = inner.scene.spawn

        def spawn(*a, **k):
            objects = original_spawn(*a, **k)
            seen.append([o.source for o in objects])
            return objects

        inner.scene.spawn = spawn
        smoothing.append(actor.q_net.config["select_smoothing_px"])
        return real(env, actor, episodes, **kwargs)

    monkeypatch.setattr(trainer, "evaluate", spy)
    js = tmp_path / "e.json"
    assert main(["eval", "--checkpoint", ckpt, "--objects", "held_out", "--num-objects", "2",
                 "--episodes", "2", "--set", "env.kwargs.max_attempts=2", "--json",
                 str(js), "--select-smoothing-px", "3"]) == 0
    assert smoothing == [3]
    text = capsys.readouterr().out
    assert "attempt success rate" in text and "95% CI" in text
    from q_grasp.sim.object_sets import object_set

    held_out = set(object_set("held_out").files)
    assert len(seen) == 2 and all(len(s) == 2 and set(s) <= held_out for s in seen)
    import json

    result = json.loads(js.read_text())
    assert result["episodes"] == 2 and 2 <= result["attempts"] <= 4
    lo, hi = result["attempt_success_ci95"]
    assert 0.0 <= lo <= result["attempt_success_rate"] <= hi <= 1.0
    # Bad input: one line naming the set or the argument, before any episode.
    for argv, match in ((["--objects", "toys"], "unknown object set 'toys'"),
                        (["--num-objects", "0-3"], "--num-objects: expected"),
                        (["--set", "env.kwargs.nope=1"], "nope: unknown field"),
                        (["--select-smoothing-px", "4"], "--select-smoothing-px: must be an odd")):
        assert main(["eval", "--checkpoint", ckpt, *argv]) == 2
        assert match in capsys.readouterr().err


def test_python_dash_m_entry_point(tmp_path):
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "q_grasp", "train", "--task", "nope-v0"],
                          cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown task" in proc.stderr
    assert "Traceback" not in proc.stderr
