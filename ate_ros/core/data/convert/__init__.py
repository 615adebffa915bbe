"""Convert rosbags into ATE alignment data and policy training episodes (``ate-ros bag2dataset``).

The package is split by job: :mod:`.spec` (settings, names, the manifest), :mod:`.streams`
(reading and cleaning one bag), :mod:`.alignment` (the output grid and the episodes),
:mod:`.decoding` (camera frames), :mod:`.writing` (episode files, message accounting) and
:mod:`.pipeline` (one bag, then many into a dataset folder). The names below are its public
interface.

Output (written to a temporary folder next to ``out_dir`` and renamed when complete)::

    out_dir/
      train/<bag>[_epNNN].hdf5   # episode_format.py: qpos (reference layout) + action, images,
      val/...                    #   timestamps, instruction; slots/joint names as attributes
      embodiment.yaml
      manifest.json              # per bag: topics, counts, drops with reasons, episodes, hashes

What is read from each bag (defaults in :class:`ConversionSpec`):

* joint positions: ``sensor_msgs/JointState`` on ``/joint_states``, matched by joint name (any
  order; extra joints ignored with a warning, a missing embodiment joint fails the bag);
* actions (``action_source``): ``trajectory`` = ``trajectory_msgs/JointTrajectory`` commands,
  ``chunk`` = our ``ActionChunk``; both give ``action[t]`` = the commanded position at
  ``t + period`` (the latest command's points, linearly interpolated in ``time_from_start``), the
  episode-format convention "sent at t, reached one period later". ``next_state`` (used by
  ``auto`` when the bag has no commands) sets ``action[t] = qpos[t + 1]``: what the robot
  actually reached one period later, the usual choice for teleoperation data; the last frame of
  every contiguous run has no successor and is dropped (reason ``no_next_state``);
* images: ``sensor_msgs/Image`` or ``CompressedImage`` (JPEG/PNG), on the embodiment camera's
  topic or its ``/compressed`` sibling, decoded by :mod:`ate_ros.core.data.image_decoding` (the
  decoder the nodes use; its docstring lists the encodings) and resized to the camera's size;
  only the frames the resampler keeps are decoded;
* instruction: ``ConversionSpec.instruction`` if set, else the latest ``std_msgs/String`` on
  ``/instruction`` at the episode start (or the first one inside it), else the bag's
  ``instruction`` metadata, else empty (with a warning);
* task and success: ``ConversionSpec.task`` if set, else the bag's ``task`` metadata; the
  bag's ``success`` metadata (``true``/``false``), stored with each episode; a bag whose
  ``embodiment`` metadata names another embodiment converts with a warning.

Bad bags fail one by one, the others still convert: a bag that cannot be opened or read
(empty, truncated, an MCAP chunk whose CRC-32 does not match its bytes, not CDR) or that lacks
a required topic is listed in the manifest with its error and the messages read before it
failed; none of its files is kept. Topics no role reads are ignored, with a warning when their
type cannot be decoded (e.g. service events).

Time alignment (:mod:`resample`): every stream is placed on a grid at ``rate_hz`` by header
stamp (``time_source="receive"`` uses the bag's receive times; a zero header stamp falls back to
the receive time). Each tick takes the newest message at or before it that is at most the
stream's max age old. Ticks with a stale stream are dropped (``gap_policy="drop"``) or end the
episode (``"split"``, default). Header-less messages (instruction, split markers) are mapped
onto the header clock with the median offset between the joint stream's header and receive
times. A header stamp that steps back by more than ``clock_jump_tolerance_s`` is a clock jump:
the bag is cut there (``clock_jump="split"``) or fails (``"error"``); smaller backward steps are
out-of-order messages and are dropped with a reason.
"""

from ate_ros.core.data.convert.pipeline import assign_splits, convert_bag, convert_bags
from ate_ros.core.data.convert.spec import (
    ACTION_SOURCES,
    CLOCK_JUMP_POLICIES,
    DROP_DECODE,
    DROP_EMPTY,
    DROP_JOINT_GAP,
    DROP_MALFORMED,
    DROP_MISSING,
    DROP_NAN,
    DROP_NO_NEXT,
    DROP_ORDER,
    DROP_OUTSIDE,
    DROP_SHORT,
    DROP_STALE,
    DROP_SUPERSEDED,
    GAP_POLICIES,
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    ROLE_ACTION,
    ROLE_CAMERA,
    ROLE_ENV_STATE,
    ROLE_IGNORED,
    ROLE_INSTRUCTION,
    ROLE_JOINTS,
    ROLE_MARKER,
    STATUS_FAILED,
    STATUS_OK,
    TIME_SOURCES,
    ConversionError,
    ConversionSpec,
    Manifest,
)
from ate_ros.core.data.convert.writing import sha256_file

__all__ = [
    "ACTION_SOURCES",
    "CLOCK_JUMP_POLICIES",
    "DROP_DECODE",
    "DROP_EMPTY",
    "DROP_JOINT_GAP",
    "DROP_MALFORMED",
    "DROP_MISSING",
    "DROP_NAN",
    "DROP_NO_NEXT",
    "DROP_ORDER",
    "DROP_OUTSIDE",
    "DROP_SHORT",
    "DROP_STALE",
    "DROP_SUPERSEDED",
    "GAP_POLICIES",
    "MANIFEST_FORMAT",
    "MANIFEST_VERSION",
    "ROLE_ACTION",
    "ROLE_CAMERA",
    "ROLE_ENV_STATE",
    "ROLE_IGNORED",
    "ROLE_INSTRUCTION",
    "ROLE_JOINTS",
    "ROLE_MARKER",
    "STATUS_FAILED",
    "STATUS_OK",
    "TIME_SOURCES",
    "ConversionError",
    "ConversionSpec",
    "Manifest",
    "assign_splits",
    "convert_bag",
    "convert_bags",
    "sha256_file",
]
