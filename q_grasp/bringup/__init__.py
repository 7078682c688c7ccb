"""bringup: train and evaluate over ROS 2 topics without ``ros2 launch`` (the pip-only twin of
``sim_train.launch.py``), run as ``python -m q_grasp.nodes.bringup``.

  config      the validated command line, the parameters file, each node's overrides
  processes   nodes composed in this process or as child processes
  monitor     progress from /diagnostics
  run         one run: train, catch up, evaluate, summarise
  cli         the command line
"""
