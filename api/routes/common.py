"""Query parameters shared by list routes."""

from __future__ import annotations

from typing import Annotated

from litestar.params import Parameter

PageNo = Annotated[int, Parameter(ge=1, le=1_000_000, query="page")]
Limit = Annotated[int, Parameter(ge=1, le=100, query="limit")]
