"""Optional conversions of row lists to pandas DataFrames and astropy Tables.

pandas and astropy are optional dependencies (``pip install lightkeeper[pandas]`` or
``lightkeeper[astropy]``); they are imported only when a conversion is asked for.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

# The columns of a light-curve point (API.md), in order: an empty light curve still converts to
# a frame or table with these columns.
POINT_COLUMNS: Sequence[str] = (
    "mjd",
    "time_scale",
    "band",
    "kind",
    "flux_njy",
    "flux_err_njy",
    "mag",
    "mag_err",
    "limiting_mag",
    "source_id",
    "is_negative",
    "reliability",
    "alert_id",
)

POINT_UNITS: Dict[str, str] = {
    "mjd": "d",
    "flux_njy": "nJy",
    "flux_err_njy": "nJy",
    "mag": "mag",
    "mag_err": "mag",
    "limiting_mag": "mag",
}

STATS_COLUMNS: Sequence[str] = ("start", "survey", "band", "alerts", "new_objects", "detections", "dead_letters")

FORMATS = (None, "pandas", "astropy")


def check_format(as_: Optional[str]) -> None:
    """Raises ``ValueError`` for an unknown ``as_``."""
    if as_ not in FORMATS:
        raise ValueError(f"as_ must be None, 'pandas' or 'astropy', not {as_!r}")


def _import_pandas() -> Any:
    try:
        import pandas
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "as_='pandas' needs pandas, which is not installed: pip install 'lightkeeper[pandas]' (or pip install pandas)"
        ) from e
    return pandas


def _import_astropy_table() -> Any:
    try:
        import astropy.table
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "as_='astropy' needs astropy, which is not installed: pip install 'lightkeeper[astropy]' (or pip install astropy)"
        ) from e
    return astropy.table


def columns_of(rows: List[Dict[str, Any]], preferred: Sequence[str]) -> List[str]:
    """The preferred columns, then any other key the rows have, in order of appearance."""
    cols = list(preferred)
    seen = set(cols)
    for row in rows:
        for k in row:
            if k not in seen:
                seen.add(k)
                cols.append(k)
    return cols


def to_pandas(
    rows: List[Dict[str, Any]],
    preferred: Sequence[str] = (),
    meta: Optional[Dict[str, Any]] = None,
    datetime_columns: Sequence[str] = (),
) -> Any:
    """A DataFrame of ``rows`` with the ``preferred`` columns first (present even when empty);
    ``meta`` goes to ``DataFrame.attrs``; ``datetime_columns`` are parsed as UTC times."""
    pd = _import_pandas()
    cols = columns_of(rows, preferred)
    frame = pd.DataFrame.from_records(rows, columns=cols) if rows else pd.DataFrame({c: [] for c in cols})
    for c in datetime_columns:
        if c in frame.columns:
            frame[c] = pd.to_datetime(frame[c], utc=True)
    if meta:
        frame.attrs.update(meta)
    return frame


def _column(table_mod: Any, name: str, values: List[Any], unit: Optional[str]) -> Any:
    """One astropy column; missing values (None) are masked."""
    present = [v for v in values if v is not None]
    mask = [v is None for v in values]
    if all(isinstance(v, bool) for v in present) and present:
        fill: Any = False
    elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present) and present:
        fill = 0.0 if any(isinstance(v, float) for v in present) else 0
    elif all(isinstance(v, str) for v in present):
        fill = ""
    else:
        # Nested values (dicts, lists): an object column.
        import numpy as np

        objects = np.empty(len(values), dtype=object)
        objects[:] = values
        return table_mod.Column(objects, name=name)
    data = [fill if v is None else v for v in values]
    if any(mask):
        return table_mod.MaskedColumn(data, name=name, mask=mask, unit=unit)
    return table_mod.Column(data, name=name, unit=unit)


def to_astropy(
    rows: List[Dict[str, Any]],
    preferred: Sequence[str] = (),
    units: Optional[Dict[str, str]] = None,
    meta: Optional[Dict[str, Any]] = None,
) -> Any:
    """An astropy Table of ``rows`` with the ``preferred`` columns first; null values are masked,
    ``units`` (column → unit string) are attached, ``meta`` goes to ``Table.meta``."""
    table_mod = _import_astropy_table()
    units = units or {}
    cols = columns_of(rows, preferred)
    columns = [_column(table_mod, c, [r.get(c) for r in rows], units.get(c)) for c in cols]
    table = table_mod.Table(columns, masked=False)
    if meta:
        table.meta.update(meta)
    return table


def convert(
    rows: List[Dict[str, Any]],
    as_: Optional[str],
    preferred: Sequence[str] = (),
    units: Optional[Dict[str, str]] = None,
    meta: Optional[Dict[str, Any]] = None,
    datetime_columns: Sequence[str] = (),
) -> Any:
    """``rows`` unchanged (``as_=None``), or as a DataFrame or Table."""
    check_format(as_)
    if as_ == "pandas":
        return to_pandas(rows, preferred, meta, datetime_columns)
    if as_ == "astropy":
        return to_astropy(rows, preferred, units, meta)
    return rows
