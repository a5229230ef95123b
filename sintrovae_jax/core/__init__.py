"""What users embed: losses, objectives, the step factory, train state, inference, parallel.

Imports nothing above it (tests/test_layout.py)."""
