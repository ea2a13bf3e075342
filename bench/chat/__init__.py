"""The chat fan-out benchmark (a package only so that mypy tells its run.py from echo's)."""
