"""ROS 2 nodes of q_grasp (sim_arm, policy, trainer) and the pip-only bringup that runs them."""
