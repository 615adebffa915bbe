"""The lifecycle pattern the nodes share (ros2/demos' lifecycle talker).

``on_configure`` creates what the node needs (model, subscriptions, publishers), ``on_activate``
starts it (timers, threads), ``on_deactivate`` stops and holds; ``on_cleanup`` destroys what
``on_configure`` created, and ``on_shutdown`` (from any state) stops the node's own work first
and then destroys the same. :class:`ReleasingLifecycleNode` holds those last two transitions; a
node says what to destroy (:meth:`~ReleasingLifecycleNode._release`) and what to stop
(:meth:`~ReleasingLifecycleNode._halt`). Its logger logs nothing once the context is shut down
(:mod:`ate_ros.ros.node_logger`): a Ctrl-C that lands in ``on_configure`` or ``on_activate`` ends
the transition without "Failed to complete transition" or rosout errors.
"""

from __future__ import annotations

from typing import Any

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from ate_ros.ros.node_logger import quiet_logging_after_shutdown

__all__ = ["ReleasingLifecycleNode"]


class ReleasingLifecycleNode(LifecycleNode):
    """A lifecycle node whose cleanup and shutdown release what ``on_configure`` created."""

    cleanup_message = "cleaned up"
    """The one line ``on_cleanup`` logs."""

    def __init__(self, node_name: str, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        quiet_logging_after_shutdown(self)

    def _release(self) -> None:
        """Destroy what ``on_configure`` created (idempotent: shutdown may follow cleanup)."""
        raise NotImplementedError

    def _halt(self) -> None:
        """Stop the node's own work (threads, commands) before shutdown releases it."""

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info(self.cleanup_message)
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._halt()
        self._release()
        return super().on_shutdown(state)
