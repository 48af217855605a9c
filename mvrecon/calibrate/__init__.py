"""Rig calibration: ChArUco boards, structure from motion, per-session refinement, formats."""
