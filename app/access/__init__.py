"""Access: API keys (created, shown once, stored hashed, revoked) and the rate limiter shared by API processes.

May import core only; the roles and the Principal that services check live in app.core.access.
"""
