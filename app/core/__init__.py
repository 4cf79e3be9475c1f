"""Settings, the database engine and sessions, domain errors, leases on claimed jobs, and how many cores the
process may use.

Owns no part of the domain. May import the standard library, pydantic-settings and SQLAlchemy only.
"""
