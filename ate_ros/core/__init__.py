"""ROS-free core of ate_ros: embodiments, alignment VAEs, steering, data, execution, simulation.

Nothing under this package may import rclpy, launch or any ``*_msgs`` package
(``test/project/test_core_is_ros_free.py`` and ruff's banned-import rule enforce it).
"""
