"""ROS glue shared by nodes: parameters from dataclasses, QoS profiles, conversions, diagnostics.

- ``ate_ros.ros.params``: :class:`DataclassParameters`, ``declare_dataclass_parameters``,
  ``dataclass_parameter_names``.
- ``ate_ros.ros.qos``: ``SENSOR_QOS``, ``STATE_QOS``, ``COMMAND_QOS``, ``LATCHED_QOS``,
  ``DIAGNOSTICS_QOS``.
- ``ate_ros.ros.conversions``: msg <-> numpy / core types.
- ``ate_ros.ros.diagnostics``: :class:`NodeDiagnostics` for ``/diagnostics``.
- ``ate_ros.ros.lifecycle``: :class:`ReleasingLifecycleNode`, the cleanup/shutdown the
  lifecycle nodes share.

Submodules are imported explicitly (``from ate_ros.ros.params import ...``) so importing this
package does not pull in every message package.
"""
