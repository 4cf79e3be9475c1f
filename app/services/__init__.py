"""Business logic. Knows nothing of HTTP: raises the errors in app.services.errors."""
