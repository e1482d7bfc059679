"""Consumers of a run's estimates besides the dashboard and the session log: stdout (headless),
and the live outputs for lab tools (Lab Streaming Layer, OSC)."""
