"""A campaign's goal: met at exactly its figure, by answered calls or by cost."""

from dialer.policy.goal import goal_reached


def test_the_goal_is_met_at_its_figure_and_not_before() -> None:
    assert goal_reached(8, None, 7, None) is None
    assert "8 answered calls" in (goal_reached(8, None, 8, None) or "")
    assert goal_reached(None, 10.0, 100, 9.99) is None
    assert "cost ceiling" in (goal_reached(None, 10.0, 0, 10.0) or "")
    assert goal_reached(None, 10.0, 0, None) is None  # no cost reported: nothing to judge
    assert goal_reached(None, None, 10**9, 10.0**9) is None  # no goal at all
