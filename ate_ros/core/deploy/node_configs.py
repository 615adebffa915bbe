"""The graph's nodes and the config dataclass each declares its ROS parameters from.

One map for everything that needs to know which node reads which config: ``ate-ros run``
(parameter files per node), ``tools/gen_docs.py`` (docs/nodes.md) and the launch tests (every
parameter a YAML or launch file sets is a field of that node's config).
"""

from __future__ import annotations

from dataclasses import dataclass

from ate_ros.core.deploy.configs import PerceptionConfig, PolicyNodeConfig, SimRobotConfig
from ate_ros.core.execution.config import ExecutorNodeConfig

__all__ = ["NODE_CONFIGS", "NODE_NAMES", "NodeConfig", "node_config"]


@dataclass(frozen=True)
class NodeConfig:
    """One node of the graph: its executable name, source module, config class and the
    parameter file the launch files give it (paths relative to the repository root)."""

    name: str
    module: str
    config: type
    yaml: str


NODE_CONFIGS: tuple[NodeConfig, ...] = (
    NodeConfig("perception_node", "ate_ros/nodes/perception_node.py", PerceptionConfig,
               "config/perception.yaml"),
    NodeConfig("policy_node", "ate_ros/nodes/policy_node.py", PolicyNodeConfig,
               "config/policy.yaml"),
    NodeConfig("executor_node", "ate_ros/nodes/executor_node.py", ExecutorNodeConfig,
               "config/executor.yaml"),
    NodeConfig("sim_robot_node", "ate_ros/nodes/sim_robot_node.py", SimRobotConfig,
               "config/sim_robot.yaml"),
)

NODE_NAMES: tuple[str, ...] = tuple(n.name for n in NODE_CONFIGS)


def node_config(name: str) -> NodeConfig:
    """The entry of node ``name``.

    Raises:
        KeyError: ``name`` is not a node of the graph (the message lists those that are).
    """
    for n in NODE_CONFIGS:
        if n.name == name:
            return n
    raise KeyError(f"no node {name!r}; nodes: {', '.join(NODE_NAMES)}")
