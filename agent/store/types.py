"""Column types and values of the store: UTC timestamps on both back ends, values made JSON-safe before a
transaction starts (numpy values as numbers and lists, NaN as null), and number columns that refuse NaN and ±inf."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, date, datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator
from sqlalchemy import Dialect
from sqlalchemy.types import DateTime, TypeDecorator


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON values: numpy scalars and arrays (anything with ``tolist``) as numbers and lists,
    non-finite floats (NaN, ±inf) as null (PostgreSQL's JSON has no NaN), datetimes as ISO strings.
    Anything else raises TypeError, before a transaction starts."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if hasattr(value, "tolist"):  # numpy scalars and arrays, torch tensors
        return json_safe(value.tolist())
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, Path)):
        return str(value)
    if isinstance(value, Enum):
        return json_safe(value.value)
    raise TypeError(f"cannot store a {type(value).__name__} in a JSON column: {value!r}")


def _json_dict(value: Any) -> Any:
    return {} if value is None else json_safe(value)


#: A dict validated into plain JSON values (see :func:`json_safe`); None becomes {}.
JsonDict = Annotated[dict[str, Any], BeforeValidator(_json_dict)]


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number, not {value}")
    return value


#: A float column value that is never NaN or ±inf (SQLite would store NaN as NULL, PostgreSQL as NaN).
FiniteFloat = Annotated[float, AfterValidator(_finite)]


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back timezone-aware (SQLite keeps no zone; naive input is UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
