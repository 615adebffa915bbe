"""The robot graph (ate.launch.py) closed loop on the MuJoCo simulation, plus optional RViz.

    ros2 launch ate_ros sim.launch.py policy:=/path/to/policy vae:=/path/to/stage2 rviz:=true

Adds sim_robot_node (joint_states, camera images, /clock, task_success; follows
<controller>/joint_trajectory) to ate.launch.py; every node runs on sim time and the executor is
live (dry_run:=false) since the robot is simulated. Without `ros2 launch`: `ate-ros run --sim`.

robot_state_publisher (package ros-$ROS_DISTRO-robot-state-publisher; robot_state_publisher:=auto,
the default, starts it where it is installed and says so in one line where it is not)
turns the sim's joint_states into TF, so RViz's RobotModel can draw the arm under the predicted
chunks. Its URDF is generated here, at launch time, from the MuJoCo model of `embodiment`
(ate_ros.core.sim.urdf, ROS-free): robot_state_publisher takes it as a parameter, not a topic.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import (
    DeclareLaunchArgument,
    IncludeLaunchDescription,
    LogInfo,
    OpaqueFunction,
)
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription

ARGUMENTS = [
    ("embodiment", "sim_arm7", "embodiment name (config/embodiments/<name>.yaml) or YAML path"),
    ("policy", "wave", "policy checkpoint directory, lerobot:<dir> (a LeRobot checkpoint, "
     "docs/lerobot.md), or a built-in policy: hold, wave"),
    ("vae", "", "stage-2 alignment directory for the OOD monitor ('' = none)"),
    ("dry_run", "false", "executor computes and checks trajectories but sends nothing"),
    ("namespace", "", "namespace of every node and topic"),
    ("controller", "arm_controller", "commands go to <controller>/joint_trajectory"),
    ("device", "cpu", "torch device of the policy"),
    ("observation_source", "topic", "topic: perception_node publishes observations to the "
     "policy; sensors: the policy node subscribes to cameras and joint_states itself"),
    ("chunking", "crossfade", "when the policy runs and how its chunks join the plan: sync, "
     "replace, crossfade, ensemble or rtc (real-time chunking); sets policy_node's chunking "
     "and executor_node's execution.blend (sync: replace). Node parameters such as "
     "execution.blend are not launch arguments: given here they would be ignored"),
    ("task", "", "simulation task ('' = default)"),
    ("seed", "0", "episode seed"),
    ("real_time_factor", "1.0", "sim seconds per wall second"),
    ("rviz", "false", "start RViz with config/ate.rviz"),
    ("robot_state_publisher", "auto",
     "start robot_state_publisher with the simulated arm's URDF (TF for RViz's RobotModel): "
     "true, false, or auto (where the package is installed; a line says when it is not)"),
]
# Forwarded to ate.launch.py.
ROBOT_ARGUMENTS = ["embodiment", "policy", "vae", "dry_run", "namespace", "controller", "device",
                   "observation_source", "chunking"]


def robot_state_publisher(context):
    """robot_state_publisher with the URDF of the simulated `embodiment` (resolved at launch),
    where the `robot_state_publisher` argument and the installation allow it."""
    from ate_ros.ros.optional_packages import optional_package, package_installed

    start, message = optional_package(
        "robot_state_publisher", LaunchConfiguration("robot_state_publisher").perform(context),
        "robot_state_publisher", package_installed("robot_state_publisher"),
        "ros-$ROS_DISTRO-robot-state-publisher")
    if not start:
        return [LogInfo(msg=message)] if message else []
    from ate_ros.core.sim.urdf import build_urdf  # ROS-free; imports MuJoCo like the sim node

    urdf = build_urdf(LaunchConfiguration("embodiment").perform(context))
    # Same namespace as the sim, so it subscribes to the sim's joint_states (sim-time stamps).
    return [Node(
        package="robot_state_publisher", executable="robot_state_publisher",
        name="robot_state_publisher", namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[{"robot_description": urdf, "use_sim_time": True}])]


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
    # ate.launch.py beside this file: the installed one, or the source tree's when this one is
    # launched by path (ros2 launch launch/sim.launch.py).
    robot = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                   "ate.launch.py")),
        launch_arguments=[(n, LaunchConfiguration(n)) for n in ROBOT_ARGUMENTS]
        + [("use_sim_time", "true")])
    rviz = Node(
        package="rviz2", executable="rviz2", name="rviz2", output="screen",
        arguments=["-d", os.path.join(share, "config", "ate.rviz")],
        parameters=[{"use_sim_time": True}],
        condition=IfCondition(LaunchConfiguration("rviz")))
    rsp = OpaqueFunction(function=robot_state_publisher)
    return LaunchDescription(args + [sim, robot, rsp, rviz])
