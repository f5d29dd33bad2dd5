"""Reproducible performance runs against the simulator on loopback (`make bench`)."""
