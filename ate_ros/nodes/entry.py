"""What ``ros2 run ate_ros <node>`` and ``ros2 launch`` start (``scripts/<node>``): the node's
module is imported, then its ``main()`` runs.

A Ctrl-C during that import (numpy, rclpy, the message packages: a few tenths of a second, more
on a loaded machine) would raise ``KeyboardInterrupt`` in the middle of some module and print its
traceback, and the process would die of SIGINT (``ros2 launch``: "process has died"). While the
module imports, :func:`run_node` takes the first Ctrl-C as "do not start": the import finishes
(a module cut short half way is never left behind), nothing is started and the exit code is 0,
as for a Ctrl-C once the node runs (:func:`ate_ros.ros.spin.spin_node`, the same
:func:`~ate_ros.ros.interrupts.quiet_first_sigint`). A second Ctrl-C still raises, should an
import hang. Neither module imports anything heavy, so the guard is in place a few milliseconds
after Python starts.
"""

from __future__ import annotations

import importlib

from ate_ros.ros.interrupts import quiet_first_sigint

__all__ = ["run_node"]


def run_node(module: str) -> int:
    """Import ``module`` (``ate_ros.nodes.<node>``) and return its ``main()``'s exit code, or
    0 without starting it when Ctrl-C came during the import."""
    with quiet_first_sigint() as interrupts:
        main = importlib.import_module(module).main
    if interrupts.count:
        return 0
    return main()
