"""The picture of action chunks, independent of RViz: end-effector kinematics and chunk paths."""
