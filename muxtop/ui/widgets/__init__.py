"""Widgets of the dashboard, one concept a file."""
