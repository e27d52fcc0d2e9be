"""Errors of the document index; each message says what was wrong."""


class DocumentIndexError(Exception):
    """Base class of document index errors."""


class DocumentNotFound(DocumentIndexError):
    def __init__(self, self_link: str) -> None:
        super().__init__(f"no document at {self_link}")
        self.self_link = self_link


class DocumentExists(DocumentIndexError):
    def __init__(self, self_link: str) -> None:
        super().__init__(f"a document already exists at {self_link}; use PUT or PATCH to change it")
        self.self_link = self_link


class VersionConflict(DocumentIndexError):
    def __init__(self, self_link: str, expected: int, actual: int) -> None:
        super().__init__(
            f"{self_link} is at version {actual}, not {expected}: re-read it and retry"
        )
        self.self_link = self_link


class InvalidWrite(DocumentIndexError):
    """The write itself is malformed (no kind on creation, a reserved field, ...)."""
