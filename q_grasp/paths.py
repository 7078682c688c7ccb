"""Where q_grasp's shipped files are: config/ of the source checkout, or share/q_grasp/config of
an install (colcon's install/q_grasp, a pip --prefix, a virtualenv, /opt/ros/<distro>)."""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = "q_grasp"
_PACKAGE_DIR = Path(__file__).resolve().parent


def config_dirs() -> list[Path]:
    """Candidate config folders, most specific first: the checkout's config/, then the share
    folder of the prefix this package is installed in (``<prefix>/lib/pythonX.Y/site-packages/
    q_grasp`` -> ``<prefix>/share/q_grasp/config``), the ament index's, and sys.prefix's."""
    dirs = [_PACKAGE_DIR.parent / "config"]
    dirs += [parent / "share" / PACKAGE / "config" for parent in _PACKAGE_DIR.parents[1:5]]
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        pass
    else:
        try:
            dirs.append(Path(get_package_share_directory(PACKAGE)) / "config")
        except (PackageNotFoundError, ValueError, LookupError, OSError):  # no ament index
            pass
    dirs.append(Path(sys.prefix) / "share" / PACKAGE / "config")
    unique: list[Path] = []
    for folder in dirs:
        if folder not in unique:
            unique.append(folder)
    return unique


def config_file(name: str) -> Path:
    """The shipped config file ``name`` (FileNotFoundError naming every folder looked in)."""
    dirs = config_dirs()
    for folder in dirs:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{name}: not found in {', '.join(str(d) for d in dirs)} (is q_grasp "
                            f"installed with its share folder, e.g. by colcon build or pip?)")
