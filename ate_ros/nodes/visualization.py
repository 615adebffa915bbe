"""Predicted chunks as a ``visualization_msgs/MarkerArray`` for RViz (from ``core.viz``).

One LINE_STRIP marker per polyline with per-vertex colours (time along the chunk), namespaces
``latest_chunk``, ``older_chunks``, ``sampled_chunks``, ``executed_path`` and, with real-time
chunking, ``committed_prefix`` / ``executing_chunk`` / ``incoming_chunk``, plus a SPHERE_LIST of
the latest chunk's waypoints. Each array starts with a DELETEALL marker so chunks that dropped out
of the history disappear (RViz applies the array in order).
"""

from __future__ import annotations

from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from ate_ros.core.viz.chunk_paths import NS_LATEST, Polyline


def polylines_to_markers(polylines: list[Polyline], frame_id: str, stamp: Time | None = None,
                         waypoints: bool = True) -> MarkerArray:
    """Build the MarkerArray for ``polylines`` in ``frame_id``."""
    stamp = stamp if stamp is not None else Time()
    arr = MarkerArray()
    clear = Marker()
    clear.header.frame_id = frame_id
    clear.header.stamp = stamp
    clear.action = Marker.DELETEALL
    arr.markers.append(clear)
    for pl in polylines:
        if len(pl.points) < 2:
            continue
        m = Marker()
        m.header.frame_id = frame_id
        m.header.stamp = stamp
        m.ns = pl.ns
        m.id = int(pl.id)
        m.type = Marker.LINE_STRIP
        m.action = Marker.ADD
        m.pose.orientation.w = 1.0
        m.scale.x = float(pl.width)
        m.points = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in pl.points]
        m.colors = [ColorRGBA(r=float(c[0]), g=float(c[1]), b=float(c[2]), a=float(c[3]))
                    for c in pl.colors]
        m.color = m.colors[-1]
        m.frame_locked = False
        arr.markers.append(m)
        if waypoints and pl.ns == NS_LATEST:
            s = Marker()
            s.header = m.header
            s.ns = NS_LATEST + "_points"
            s.id = int(pl.id)
            s.type = Marker.SPHERE_LIST
            s.action = Marker.ADD
            s.pose.orientation.w = 1.0
            d = float(pl.width) * 2.5
            s.scale.x = s.scale.y = s.scale.z = d
            s.points = m.points
            s.colors = m.colors
            s.color = m.color
            arr.markers.append(s)
    return arr
