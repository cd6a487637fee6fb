"""The suite itself: the order in which `make test` runs it."""

import pytest


def test_the_unit_level_tests_run_before_the_slow_ones(request: pytest.FixtureRequest) -> None:
    """In every random order, no unmarked test comes after one marked `slow`."""
    slow = [item.get_closest_marker("slow") is not None for item in request.session.items]
    assert slow == sorted(slow)
