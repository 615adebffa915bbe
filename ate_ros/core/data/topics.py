"""Default topic names and message type names shared by the bag recorder and the converter.

The simulation records with these names, and ``ate-ros bag2dataset`` looks for them unless the
conversion spec says otherwise, so both sides of the pipeline agree by construction.
"""

from __future__ import annotations

JOINT_STATES_TOPIC = "/joint_states"
"""``sensor_msgs/JointState``: measured joint positions (matched by name)."""
COMMAND_TOPIC = "/arm_controller/joint_trajectory"
"""``trajectory_msgs/JointTrajectory``: commands streamed to joint_trajectory_controller."""
ACTION_CHUNK_TOPIC = "/action_chunk"
"""``ate_ros/ActionChunk``: chunks published by the policy node."""
ENV_STATE_TOPIC = "/environment_state"
"""``ate_ros/EnvironmentState``: the low-dimensional scene state (object offsets, fingertip) a
``low_dim`` policy reads; optional in bags."""
INSTRUCTION_TOPIC = "/instruction"
"""``std_msgs/String``: the natural-language instruction in force."""
METADATA_TOPIC = "/ate_ros/metadata"
"""``std_msgs/String`` holding ``{"key": ..., "value": ...}`` JSON: bag metadata in ROS 1 bags,
which have no metadata section (rosbag2 bags use ``custom_data`` in ``metadata.yaml``)."""
IMAGE_SUFFIX = "image_raw"
COMPRESSED_SUFFIX = "compressed"

# Message type names, in rosbags' (ROS 2) spelling; ROS 1 bags are normalised to these.
JOINT_STATE_TYPE = "sensor_msgs/msg/JointState"
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
JOINT_TRAJECTORY_TYPE = "trajectory_msgs/msg/JointTrajectory"
STRING_TYPE = "std_msgs/msg/String"
ACTION_CHUNK_TYPE = "ate_ros/msg/ActionChunk"
OBSERVATION_TYPE = "ate_ros/msg/Observation"
ENV_STATE_TYPE = "ate_ros/msg/EnvironmentState"


def absolute_topic(topic: str) -> str:
    """``"cam/image_raw"`` -> ``"/cam/image_raw"``: bags store fully qualified names."""
    return topic if topic.startswith("/") else "/" + topic


def camera_topic(camera: str, compressed: bool = False) -> str:
    """Default topic of a camera: ``/<camera>/image_raw`` (``.../compressed`` if compressed)."""
    base = f"/{camera.strip('/')}/{IMAGE_SUFFIX}"
    return f"{base}/{COMPRESSED_SUFFIX}" if compressed else base
