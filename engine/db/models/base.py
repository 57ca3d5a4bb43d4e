"""The declarative base with its shared column types, and the id and clock helpers rows are built with."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON
from sqlalchemy.orm import DeclarativeBase

from engine.ids import new_id as new_id  # re-exported for the services that build rows
from engine.ids import now as now


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON, list[Any]: JSON}
