"""The robot graph (ate.launch.py) closed loop on the MuJoCo simulation, plus optional RViz.

    ros2 launch ate_ros sim.launch.py policy:=/path/to/policy vae:=/path/to/stage2 rviz:=true

Adds sim_robot_node (joint_states, camera images, /clock, task_success; follows
<controller>/joint_trajectory) to ate.launch.py; every node runs on sim time and the executor is
live (dry_run:=false) since the robot is simulated. Without `ros2 launch`: `ate-ros run --sim`.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription

ARGUMENTS = [
    ("embodiment", "sim_arm7", "embodiment name (config/embodiments/<name>.yaml) or YAML path"),
    ("policy", "wave", "policy checkpoint directory, or a built-in policy: hold, wave"),
    ("vae", "", "stage-2 alignment directory for the OOD monitor ('' = none)"),
    ("dry_run", "false", "executor computes and checks trajectories but sends nothing"),
    ("namespace", "", "namespace of every node and topic"),
    ("controller", "arm_controller", "commands go to <controller>/joint_trajectory"),
    ("device", "cpu", "torch device of the policy"),
    ("task", "", "simulation task ('' = default)"),
    ("seed", "0", "episode seed"),
    ("real_time_factor", "1.0", "sim seconds per wall second"),
    ("rviz", "false", "start RViz with config/ate.rviz"),
]
# Forwarded to ate.launch.py.
ROBOT_ARGUMENTS = ["embodiment", "policy", "vae", "dry_run", "namespace", "controller", "device"]


def generate_launch_description():
    share = get_package_share_directory("ate_ros")
    args = [DeclareLaunchArgument(n, default_value=d, description=h) for n, d, h in ARGUMENTS]
    sim = Node(
        package="ate_ros", executable="sim_robot_node", name="sim_robot_node",
        namespace=LaunchConfiguration("namespace"), output="screen",
        parameters=[os.path.join(share, "config", "sim_robot.yaml"), {
            "embodiment": LaunchConfiguration("embodiment"),
            "task": LaunchConfiguration("task"),
            "seed": ParameterValue(LaunchConfiguration("seed"), value_type=int),
            "real_time_factor": ParameterValue(LaunchConfiguration("real_time_factor"),
                                               value_type=float),
            "controller": LaunchConfiguration("controller"),
        }])
    robot = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "ate.launch.py")),
        launch_arguments=[(n, LaunchConfiguration(n)) for n in ROBOT_ARGUMENTS]
        + [("use_sim_time", "true")])
    rviz = Node(
        package="rviz2", executable="rviz2", name="rviz2", output="screen",
        arguments=["-d", os.path.join(share, "config", "ate.rviz")],
        parameters=[{"use_sim_time": True}],
        condition=IfCondition(LaunchConfiguration("rviz")))
    return LaunchDescription(args + [sim, robot, rviz])
