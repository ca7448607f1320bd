"""The authorization sidecar: role policies for employees, an audit trail, seats and two-step auth.

Imports point one way: ``policy`` (pure domain) -> ``store`` (Redis) -> ``api`` (Flask) ->
``app`` / ``cli`` (entry points).
"""
