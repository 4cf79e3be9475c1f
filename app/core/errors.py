"""Domain errors; the API layer maps them onto HTTP status codes."""


class ServiceError(Exception):
    """Base class: the message is meant for the caller."""


class NotFoundError(ServiceError):
    pass


class ConflictError(ServiceError):
    pass


class InvalidInputError(ServiceError):
    pass


class PayloadTooLargeError(ServiceError):
    pass


class AuthenticationError(ServiceError):
    """No key, or a key that is unknown or revoked (401)."""


class ForbiddenError(ServiceError):
    """The key is valid but may not do this (403)."""


class BusyError(ServiceError):
    """Too much in flight; the caller should retry after `retry_after_s` (503)."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
