"""Learning-curve plots from run folders, seeds as mean and spread.

Two kinds of run folder are read: `q_grasp train`'s (progress.csv with a `step` column, plus
episodes.csv) and the ROS trainer's (progress.csv with a `transitions` column, as `make run`
writes it). A run folder holds either the CSVs itself or one sub-folder per seed (`seed_0/`,
...). Each run folder given is one curve; its seeds are interpolated onto a common step grid
and drawn as the mean with a min-max band. A panel is drawn when some run has its metric.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

TRAIN, ROS = "train", "ros"
"""Run-folder kinds: `q_grasp train` and the ROS trainer node."""
STEP_COLUMN = {TRAIN: "step", ROS: "transitions"}
"""The x axis of each kind (both count environment transitions)."""
PANELS = [
    ("success rate", {TRAIN: ("episodes", "success"), ROS: ("progress", "success_rate")}),
    ("TD loss", {TRAIN: ("progress", "loss"), ROS: ("progress", "loss")}),
    ("mean max-Q", {TRAIN: ("progress", "mean_max_q"), ROS: ("progress", "mean_max_q")}),
    ("epsilon / temperature", {TRAIN: ("progress", "epsilon"), ROS: ("progress", "epsilon")}),
    ("episode return", {TRAIN: ("episodes", "return")}),
    ("episode length", {TRAIN: ("episodes", "length")}),
    ("gradient updates/s", {ROS: ("progress", "updates_per_s")}),
    ("weights version", {ROS: ("progress", "weights_version")}),
]
"""(title, {kind: (csv file, column)}); episodes.csv columns are drawn as moving averages
(the ROS trainer's success_rate is already over its last episodes)."""


class PlotError(ValueError):
    """No metrics found where a run folder was expected."""


def read_csv(path: Path) -> dict[str, np.ndarray]:
    """Columns of a metrics CSV as float arrays (empty cells -> NaN)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    out = {}
    for key in rows[0]:
        vals = []
        for r in rows:
            try:
                vals.append(float(r[key]) if r[key] not in ("", None) else np.nan)
            except ValueError:
                vals.append(np.nan)
        out[key] = np.array(vals)
    return out


def seed_dirs(run_dir: Path) -> list[Path]:
    """The folders holding progress.csv for one run (itself, or its seed_* sub-folders)."""
    if (run_dir / "progress.csv").is_file():
        return [run_dir]
    subs = sorted(p.parent for p in run_dir.glob("*/progress.csv"))
    if not subs:
        raise PlotError(f"plot: {str(run_dir)!r} holds no progress.csv (nor seed_*/progress.csv)"
                        f" - is it a run folder of `q_grasp train` or `make run`?")
    return subs


def run_kind(folder: Path) -> str:
    """TRAIN or ROS from progress.csv's header; PlotError for any other file."""
    path = folder / "progress.csv"
    try:
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError) as exc:
        raise PlotError(f"plot: cannot read {path}: {exc}") from None
    for kind, column in STEP_COLUMN.items():
        if column in header:
            return kind
    raise PlotError(f"plot: {path} has neither a step nor a transitions column (header "
                    f"{','.join(header)[:80]!r}) - not a q_grasp metrics file")


def moving_average(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to `window` values, NaNs ignored."""
    out = np.full(len(x), np.nan)
    for i in range(len(x)):
        seg = x[max(0, i - window + 1): i + 1]
        seg = seg[np.isfinite(seg)]
        if len(seg):
            out[i] = seg.mean()
    return out


def _series(folder: Path, kind: str, source: str, key: str, window: int
            ) -> tuple[np.ndarray, np.ndarray]:
    data = read_csv(folder / f"{source}.csv") if (folder / f"{source}.csv").is_file() else {}
    x = "step" if source == "episodes" else STEP_COLUMN[kind]
    if key not in data or x not in data:
        return np.array([]), np.array([])
    steps, values = data[x], data[key]
    if source == "episodes":
        values = moving_average(values, window)
    ok = np.isfinite(values) & np.isfinite(steps)
    return steps[ok], values[ok]


def plot_runs(run_dirs: list[str | Path], out: str | Path, window: int = 50,
              title: str | None = None) -> Path:
    """Write a PNG of the learning curves of `run_dirs`; returns its path. PlotError (and no
    file) when the folders hold no metric to draw."""
    groups = []
    for d in run_dirs:
        folders = seed_dirs(Path(d))
        groups.append((Path(d).name or str(d), [(f, run_kind(f)) for f in folders]))
    panels = []
    for label, sources in PANELS:
        lines = []
        for name, folders in groups:
            curves = [_series(f, kind, *sources[kind], window) for f, kind in folders
                      if kind in sources]
            curves = [c for c in curves if len(c[0])]
            if curves:
                lines.append((name, curves))
        if lines:
            panels.append((label, lines))
    if not panels:
        names = ", ".join(str(d) for d in run_dirs)
        raise PlotError(f"plot: no metric values to draw in {names} (progress.csv has no rows "
                        f"with numbers yet)")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 4 * rows), squeeze=False)
    colors = {name: f"C{i}" for i, (name, _) in enumerate(groups)}
    for ax, (label, lines) in zip(axes.flat, panels):
        for name, curves in lines:
            color = colors[name]
            n = len(curves)
            tag = f"{name} ({n} seeds)" if n > 1 else name
            if n == 1:
                ax.plot(curves[0][0], curves[0][1], color=color, label=tag)
                continue
            hi = min(c[0][-1] for c in curves)
            lo = max(c[0][0] for c in curves)
            grid = np.linspace(lo, hi, 200) if hi > lo else np.array([lo])
            ys = np.stack([np.interp(grid, s, v) for s, v in curves])
            ax.plot(grid, ys.mean(0), color=color, label=tag)
            ax.fill_between(grid, ys.min(0), ys.max(0), color=color, alpha=0.2)
        ax.set_title(label)
        ax.set_xlabel("environment steps (transitions)")
        ax.grid(alpha=0.3)
        if label == "TD loss" and all((c[1] > 0).all() for _, cs in lines for c in cs):
            ax.set_yscale("log")
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
