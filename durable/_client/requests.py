"""Request ids of client writes: the same id applied twice has one effect."""

from __future__ import annotations

import itertools
import os
import uuid
from typing import Any

from .._validate import check_name


class _RequestIds:
    """New request ids: a random prefix of the process (a new one in a forked child) and a
    number, unique across processes and cheap (uuid4 costs a system call each)."""

    def __init__(self) -> None:
        self.renew()
        os.register_at_fork(after_in_child=self.renew)

    def renew(self) -> None:
        self.prefix = uuid.uuid4().hex
        self.numbers = itertools.count(1)

    def new(self) -> str:
        return f"{self.prefix}-{next(self.numbers)}"


_ids = _RequestIds()


def request_id_of(value: Any) -> str:
    """A client write's request id: the caller's (checked), else a new one."""
    return _ids.new() if value is None else check_name("request_id", value)
