"""The 2016 research note's experiment as a demo: ``python -m demo --help``."""
