"""Screens of the dashboard: the main one, one connection in detail, help."""
