"""Schedules and sensors built from the schedules/ catalogue (see rhythms.py)."""

from codex_dreams.automation.rhythms import build_rhythms

__all__ = ["build_rhythms"]
