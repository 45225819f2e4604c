"""Worked examples of ports checked by the conformance suite from outside Python's import system."""
