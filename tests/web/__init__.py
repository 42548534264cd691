"""Helpers for the web page's tests (tests/test_web*.py)."""
