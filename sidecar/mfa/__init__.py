"""Two-step authentication: one-time codes by email, approvals by push.

    codes.py       CSPRNG codes, keyed hashes (HMAC-SHA256), constant-time comparison
    challenges.py  challenges in Redis: status, attempts, expiry, rate limit; atomic verify
    devices.py     employees' registered phones (the mobile app), in Redis
    email.py       the email channel: one plain-text message through SMTP (smtplib)
    push.py        the push channel: one entry on the Redis stream ``sidecar:push-outbox``
    trail.py       audit events (category ``login``) in every tenant of the employee
    service.py     the flows that tie them together; the web layer calls only this

Imports point one way: codes <- challenges/devices/channels <- service <- ``sidecar.api.mfa``.
A code is never logged and never stored in clear: only its keyed hash reaches Redis.
"""
