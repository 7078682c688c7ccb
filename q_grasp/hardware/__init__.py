"""Real-hardware cores without ROS: the xArm servo board's protocol, its calibration, and a
fake board that speaks the same bytes for tests and for trying the driver without an arm."""
