"""Learning-curve plots from run folders (progress.csv / episodes.csv), seeds as mean and spread.

A run folder holds either the CSVs itself or one sub-folder per seed (`seed_0/`, ...). Each run
folder given is one curve; its seeds are interpolated onto a common step grid and drawn as the
mean with a min-max band.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

PANELS = [
    ("episodes", "return", "episode return (moving avg)"),
    ("progress", "loss", "TD loss"),
    ("episodes", "success", "success rate (moving avg)"),
    ("episodes", "length", "episode length (moving avg)"),
    ("progress", "mean_max_q", "mean max-Q"),
    ("progress", "epsilon", "epsilon / temperature"),
]


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
                        f" - is it a run folder written by `q_grasp train`?")
    return subs


def moving_average(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to `window` values, NaNs ignored."""
    out = np.full(len(x), np.nan)
    for i in range(len(x)):
        seg = x[max(0, i - window + 1): i + 1]
        seg = seg[np.isfinite(seg)]
        if len(seg):
            out[i] = seg.mean()
    return out


def _series(folder: Path, source: str, key: str, window: int) -> tuple[np.ndarray, np.ndarray]:
    data = read_csv(folder / f"{source}.csv") if (folder / f"{source}.csv").is_file() else {}
    if key not in data or "step" not in data:
        return np.array([]), np.array([])
    steps, values = data["step"], data[key]
    if source == "episodes":
        values = moving_average(values, window)
    ok = np.isfinite(values)
    return steps[ok], values[ok]


def plot_runs(run_dirs: list[str | Path], out: str | Path, window: int = 50,
              title: str | None = None) -> Path:
    """Write a 2x3 PNG of the learning curves of `run_dirs`; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [(Path(d).name or str(d), seed_dirs(Path(d))) for d in run_dirs]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for ax, (source, key, label) in zip(axes.flat, PANELS):
        for i, (name, folders) in enumerate(groups):
            color = f"C{i}"
            curves = [_series(f, source, key, window) for f in folders]
            curves = [c for c in curves if len(c[0])]
            if not curves:
                continue
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
        ax.set_xlabel("environment steps")
        ax.grid(alpha=0.3)
        if key == "loss" and ax.lines:
            ax.set_yscale("log")
        if ax.lines:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
