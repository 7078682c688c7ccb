"""q_grasp: deep Q-learning for robot arms (reaching and top-down grasping) with ROS 2."""

__version__ = "0.1.0"
