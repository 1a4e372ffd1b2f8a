"""Testing helpers for recsys and engine plugins: a stub engine and the conformance suite.

PLACEHOLDER — implementation pending.
"""
