"""Simulators that drive the platform with realistic data (``creditflow simulate ...``)."""
