"""Simulators and virtual cards for `relais demo` and the tests; never used in production."""
