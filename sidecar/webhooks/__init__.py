"""Alerts: audit events POSTed to subscribers' webhooks, signed, retried, with dead letters.

    rules.py      what a subscription may say (the SSRF rule for URLs, categories, actions, secret)
    signing.py    ``X-Sidecar-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` and its check
    service.py    the worker thread of each process: fan-out from the audit logs, then deliveries

The Redis side (subscriptions, the durable queue, dead letters) is
:mod:`sidecar.store.webhooks`; the routes are :mod:`sidecar.api.webhooks`.
"""
