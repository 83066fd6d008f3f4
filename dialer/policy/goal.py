"""When a campaign has done what it was for: its stop_after goal or its max_cost ceiling."""

from __future__ import annotations


def goal_reached(
    goal_answered: int | None, max_cost: float | None, answered: int, cost: float | None
) -> str | None:
    """Why a campaign with a goal is complete now (None: not yet): enough calls answered by a
    person (completed), or the provider-reported cost at its ceiling."""
    if goal_answered is not None and answered >= goal_answered:
        return f"goal reached: {answered} answered calls (stop_after {goal_answered})"
    if max_cost is not None and cost is not None and cost >= max_cost:
        return f"cost ceiling reached: {cost:g} (max_cost {max_cost:g})"
    return None
