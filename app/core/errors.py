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
