"""Run a policy on a robot: perception_node + policy_node + executor_node (lifecycle nodes).

    ros2 launch ate_ros ate.launch.py embodiment:=sim_arm7 policy:=/path/to/policy \
        vae:=/path/to/align/stage2 dry_run:=true

Node parameters come from config/{perception,policy,executor}.yaml; the arguments below override
the common ones. `embodiment` names config/embodiments/<name>.yaml (or is a YAML path). Every node
is configured and activated automatically (autostart:=false leaves them unconfigured for a
lifecycle manager). Topics are relative: set namespace:= to run several robots.

observation_source:=sensors starts no perception_node: policy_node subscribes to the cameras and
joint_states itself (its `sensors.*` parameters in config/policy.yaml), which saves one DDS hop
and the Observation's image copy per chunk (see the README's latency table). The `observation`
topic is then not published.

No robot_state_publisher here: on a real robot, `robot_description` and TF come from the robot's
own bringup (its URDF, robot_state_publisher and joint_states), which RViz's RobotModel
(config/ate.rviz, /robot_description) then shows; sim.launch.py starts one for the simulated arm.
Chunk markers are drawn in the embodiment's `base_frame`, so that must be a frame of that TF tree.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler
from launch.conditions import IfCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, NotEqualsSubstitution, PythonExpression
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.parameter_descriptions import ParameterValue
from lifecycle_msgs.msg import Transition

from launch import LaunchDescription

ARGUMENTS = [
    ("embodiment", "sim_arm7", "embodiment name (config/embodiments/<name>.yaml) or YAML path"),
    ("policy", "wave", "policy checkpoint directory, lerobot:<dir> (a LeRobot checkpoint, "
     "docs/lerobot.md), or a built-in policy: hold, wave"),
    ("vae", "", "stage-2 alignment directory for the OOD monitor ('' = none)"),
    ("dry_run", "true", "executor computes and checks trajectories but sends nothing"),
    ("use_sim_time", "false", "all nodes use /clock"),
    ("namespace", "", "namespace of every node and topic"),
    ("controller", "arm_controller", "commands go to <controller>/joint_trajectory"),
    ("device", "cpu", "torch device of the policy"),
    ("autostart", "true", "configure and activate every node at start"),
    ("observation_source", "topic", "topic: perception_node publishes observations to the "
     "policy; sensors: the policy node subscribes to cameras and joint_states itself"),
    ("chunking", "crossfade", "when the policy runs and how its chunks join the plan: sync, "
     "replace, crossfade, ensemble or rtc (real-time chunking); sets policy_node's chunking "
     "and executor_node's execution.blend (sync: replace), over the config files"),
]


def config_file(name):
    return os.path.join(get_package_share_directory("ate_ros"), "config", name)


def robot_nodes():
    """perception + policy + executor (shared with sim.launch.py)."""
    embodiment = LaunchConfiguration("embodiment")
    use_sim_time = ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)
    namespace = LaunchConfiguration("namespace")
    common = {"embodiment": embodiment, "use_sim_time": use_sim_time}

    source = LaunchConfiguration("observation_source")
    chunking = LaunchConfiguration("chunking")
    perception = LifecycleNode(
        package="ate_ros", executable="perception_node", name="perception_node",
        namespace=namespace, output="screen",
        parameters=[config_file("perception.yaml"), common],
        condition=IfCondition(NotEqualsSubstitution(LaunchConfiguration("observation_source"),
                                                    "sensors")))
    policy = LifecycleNode(
        package="ate_ros", executable="policy_node", name="policy_node",
        namespace=namespace, output="screen",
        parameters=[config_file("policy.yaml"), common, {
            "policy": LaunchConfiguration("policy"),
            "vae": LaunchConfiguration("vae"),
            "device": LaunchConfiguration("device"),
            "observation_source": source,
            "chunking": chunking,
        }])
    executor = LifecycleNode(
        package="ate_ros", executable="executor_node", name="executor_node",
        namespace=namespace, output="screen",
        parameters=[config_file("executor.yaml"), common, {
            "dry_run": ParameterValue(LaunchConfiguration("dry_run"), value_type=bool),
            "controller": LaunchConfiguration("controller"),
            # ate_ros.core.deploy.configs.chunking_parameters: sync runs with replace.
            "execution.blend": PythonExpression(
                ["'replace' if '", chunking, "' == 'sync' else '", chunking, "'"]),
        }])

    nodes = [perception, policy, executor]
    return nodes + [e for n in nodes for e in autostart(n)]


def autostart(node):
    """Configure ``node`` at start and activate it once it is inactive (unless autostart:=false).

    A node that is not launched (perception_node with observation_source:=sensors) handles no
    event: its transitions are dropped.
    """
    condition = IfCondition(LaunchConfiguration("autostart"))
    configure = EmitEvent(condition=condition, event=ChangeState(
        lifecycle_node_matcher=matches_action(node),
        transition_id=Transition.TRANSITION_CONFIGURE))
    activate = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, goal_state="inactive",
        entities=[EmitEvent(event=ChangeState(
            lifecycle_node_matcher=matches_action(node),
            transition_id=Transition.TRANSITION_ACTIVATE))]), condition=condition)
    return [activate, configure]


def generate_launch_description():
    args = [DeclareLaunchArgument(n, default_value=d, description=h) for n, d, h in ARGUMENTS]
    return LaunchDescription(args + robot_nodes())
