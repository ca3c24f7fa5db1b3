"""Helpers the tests share (not fixtures: those are in the conftest.py files)."""
