"""``choreo init``: a new project that works at once (schemas, models, a service, a saga, tests)."""

from choreo._scaffold.project import ScaffoldError, create_project

__all__ = ["ScaffoldError", "create_project"]
