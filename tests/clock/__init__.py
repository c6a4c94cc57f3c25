"""Whole test runs at a chosen wall-clock time (`python -m tests.clock.at`); the clocks tests give the code
they test are in tests/support/clock.py."""
