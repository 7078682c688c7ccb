"""Learning-curve plots of both kinds of run folder (`q_grasp train`'s and the ROS trainer's
progress.csv), and clear refusals of folders without metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from q_grasp.cli import main
from q_grasp.learning.metrics import CsvLog
from q_grasp.learning.plotting import PlotError, plot_runs
from q_grasp.learning.trainer_loop import PROGRESS_FIELDS

C0 = np.array([0x1F, 0x77, 0xB4]) / 255.0  # matplotlib's first line colour


def line_pixels(png) -> int:
    """Pixels of the first curve's colour in a PNG (0 for empty axes)."""
    import matplotlib.image

    rgb = matplotlib.image.imread(str(png))[..., :3]
    return int((np.abs(rgb - C0).max(axis=-1) < 0.08).sum())


def ros_run(folder, rows: int) -> None:
    """A progress.csv with the ROS trainer node's columns (as TrainerNode writes it)."""
    folder.mkdir(parents=True)
    log = CsvLog(folder / "progress.csv", PROGRESS_FIELDS)
    for i in range(rows):
        log.write({"wall_time_s": 100.0 + i, "transitions": 50 * i, "episodes": 5 * i,
                   "buffer_size": 50 * i, "updates": 40 * i, "updates_per_s": 8.0 + i % 3,
                   "loss": math.nan if i < 2 else 1.0 / i, "mean_max_q": 0.1 * i,
                   "epsilon": max(1.0 - 0.1 * i, 0.05), "success_rate": min(0.08 * i, 1.0),
                   "reward_mean": 0.1, "weights_version": 40 * i, "rejected": 0,
                   "dropped_batches": 0})
    log.close()


def test_ros_run_folder_is_plotted(tmp_path) -> None:
    run = tmp_path / "grasp_ros"
    ros_run(run, rows=12)
    png = plot_runs([run], tmp_path / "plots.png")
    assert line_pixels(png) > 2000  # six panels with a curve each


def test_ros_and_single_process_runs_share_panels(tmp_path, capsys) -> None:
    ros_run(tmp_path / "ros", rows=6)
    single = tmp_path / "single"
    single.mkdir()
    log = CsvLog(single / "progress.csv", ["step", "loss", "epsilon", "mean_max_q"])
    for i in range(1, 6):
        log.write({"step": 100 * i, "loss": 1.0 / i, "epsilon": 1.0 / i, "mean_max_q": i})
    log.close()
    png = tmp_path / "both.png"
    assert main(["plot", str(tmp_path / "ros"), str(single), "--out", str(png)]) == 0
    assert line_pixels(png) > 1000


@pytest.mark.parametrize("content, message", [
    (None, "holds no progress.csv"),
    (",".join(PROGRESS_FIELDS) + "\n", "no metric values to draw"),
    ("time,value\n1,2\n", "neither a step nor a transitions column"),
    ("step,loss\n1,\n2,nan\n", "no metric values to draw"),
])
def test_folders_without_metrics_are_refused(tmp_path, capsys, content, message) -> None:
    run = tmp_path / "run"
    run.mkdir()
    if content is not None:
        (run / "progress.csv").write_text(content)
    with pytest.raises(PlotError, match=message):
        plot_runs([run], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
    assert main(["plot", str(run), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and str(run) in err
