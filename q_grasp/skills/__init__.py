"""Robot skills written once against an ArmInterface (simulator in-process or ROS topics)."""
