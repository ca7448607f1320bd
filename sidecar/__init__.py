"""The authorization sidecar: role policies for employees, an audit trail, seats and two-step auth.

Imports point one way (``tests/test_layers.py`` checks it, imports inside functions included):

    policy -> store -> features (audit, mfa, billing, forward_auth) -> runtime -> api -> app / server / cli

``errors``, ``config``, ``logs`` and ``metrics`` are leaves, importable from anywhere. Only
``api/`` and ``app`` import Flask; only ``store/`` imports redis; only ``policy/engine`` imports
casbin.
"""
