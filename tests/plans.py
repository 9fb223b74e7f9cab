"""Reading PostgreSQL's EXPLAIN (ANALYZE, FORMAT JSON) plans in tests: how many rows a statement
read, a count that does not depend on the machine's speed."""

from __future__ import annotations

from typing import Any


def rows_visited(plan: dict[str, Any]) -> int:
    """Rows every node of an EXPLAIN ANALYZE plan produced, over all its loops."""
    own = int(plan.get("Actual Rows", 0)) * int(plan.get("Actual Loops", 1))
    return own + sum(rows_visited(child) for child in plan.get("Plans", []))
