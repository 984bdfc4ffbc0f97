"""One error root: every error BlockImage raises on purpose is a BlockImageError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import blockimage
from blockimage.errors import BlockImageError


def test_every_error_class_of_the_package_inherits_the_root():
    orphans = []
    for info in pkgutil.walk_packages(blockimage.__path__, "blockimage."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__ or not issubclass(cls, BaseException):
                continue
            if not issubclass(cls, BlockImageError):
                orphans.append(f"{module.__name__}.{name}")
    assert orphans == []


def test_errors_keep_their_builtin_kind():
    from blockimage.imaging import InvalidImageError
    from blockimage.ledger import RecordNotFoundError
    from blockimage.storage import StorageError

    assert issubclass(InvalidImageError, ValueError)
    assert issubclass(RecordNotFoundError, KeyError)
    assert issubclass(StorageError, RuntimeError)
