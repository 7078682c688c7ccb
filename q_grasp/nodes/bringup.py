"""``python -m q_grasp.nodes.bringup``: train and evaluate over ROS 2 topics without
``ros2 launch`` (the launch helper of a pip-only install; the q_grasp.bringup package)."""

import sys

from q_grasp.bringup.cli import main

if __name__ == "__main__":
    sys.exit(main())
