"""Consumers of a run's estimates besides the dashboard and the session log."""
