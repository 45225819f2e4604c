"""The conformance suite's test modules (run with ``python -m conformance --impl ...``)."""
