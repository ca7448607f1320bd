"""Two-step authentication: one-time codes by email, approvals by push.

    codes.py       CSPRNG codes, keyed hashes (HMAC-SHA256), constant-time comparison
    email.py       the email channel: one plain-text message through SMTP (smtplib)
    trail.py       audit events (category ``login``) in every tenant of the employee
    service.py     the flows that tie them together; the web layer calls only this

Their Redis side (challenges, devices, the push outbox) lives in :mod:`sidecar.store.mfa`.
Imports point one way: store.mfa / codes / email <- service <- ``sidecar.api.mfa``.
A code is never logged and never stored in clear: only its keyed hash reaches Redis.
"""
