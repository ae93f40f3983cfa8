"""The table the bench scripts print: measurement, value, ratio to its baseline, unit."""

from __future__ import annotations

Row = tuple[str, float, float, str]
"""(measurement, value, ratio to the baseline or 0 for none, unit)."""


def print_rows(rows: list[Row]) -> None:
    """Print ``rows`` aligned; a zero ratio is left blank."""
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':{width}}  {'value':>10}  {'ratio':>7}  unit")
    print("-" * (width + 30))
    for name, value, ratio, unit in rows:
        shown = f"{ratio:7.2f}" if ratio else "       "
        print(f"{name:{width}}  {value:10.2f}  {shown}  {unit}")
