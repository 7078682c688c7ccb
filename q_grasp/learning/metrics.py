"""Metric files of a run, shared by the single-process trainer and the ROS trainer node: CSV
rows (progress.csv, episodes.csv) and TensorBoard scalars (run_dir/tb)."""

from __future__ import annotations

import csv
import math
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def format_cell(value: Any) -> Any:
    """A CSV cell: empty for None and non-finite floats, floats to 6 significant digits."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.6g}"
    return value


class CsvLog:
    """One CSV file with fixed columns, flushed after each row (readable while a run goes on).

    ``append``: continue an existing file (a resumed run) instead of starting it over; its
    own header is kept, so rows stay aligned with a file written with other columns."""

    def __init__(self, path: str | Path, fields: Sequence[str], append: bool = False) -> None:
        path = Path(path)
        header: list[str] = []
        if append and path.is_file():
            with open(path, newline="") as f:
                header = next(csv.reader(f), [])
        self.path = path
        self._file = open(path, "a" if header else "w", newline="")  # noqa: SIM115 - close()
        self._writer = csv.DictWriter(self._file, header or list(fields), extrasaction="ignore")
        if not header:
            self._writer.writeheader()

    def write(self, row: dict[str, Any]) -> None:
        self._writer.writerow({k: format_cell(v) for k, v in row.items()})
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class ScalarWriter:
    """TensorBoard scalars in ``log_dir``; a no-op where tensorboard is not installed (the
    CSV files hold the same numbers)."""

    def __init__(self, log_dir: str | Path) -> None:
        self.log_dir = Path(log_dir)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self._tb = None
        else:
            self._tb = SummaryWriter(str(self.log_dir))

    @property
    def enabled(self) -> bool:
        return self._tb is not None

    def scalars(self, prefix: str, row: dict[str, Any], step: int, skip: Sequence[str] = ()
                ) -> None:
        """``prefix/key`` for every finite number of ``row`` (bools and text are left out)."""
        if self._tb is None:
            return
        for key, value in row.items():
            if key in skip or isinstance(value, bool) or not isinstance(value, numbers.Real):
                continue
            if math.isfinite(value):
                self._tb.add_scalar(f"{prefix}/{key}", float(value), step)

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
