"""Property: a feature never sees the future. Whatever is added with ``available_on >= as_of`` (or a
period starting on or after it), the features of a simulated firm are unchanged."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from creditflow.credit.features import compute_features
from creditflow.credit.simulate import simulate
from creditflow.credit.sources import SOURCES, Observation

WORLD = simulate(30, 3)
METRICS = [(s.name, m.name) for s in SOURCES.values() for m in s.metrics]


@settings(max_examples=60, deadline=None)
@given(
    firm=st.integers(0, WORLD.n - 1),
    extra=st.lists(
        st.tuples(
            st.sampled_from(METRICS), st.integers(-30, 400), st.integers(0, 400), st.floats(-1e9, 1e9, allow_nan=False)
        ),
        max_size=20,
    ),
)
def test_future_data_never_changes_features(firm: int, extra: list[tuple[tuple[str, str], int, int, float]]) -> None:
    as_of = WORLD.as_of(firm)
    observed = WORLD.observations(firm, until_month=int(WORLD.apply_month[firm]))
    expected = compute_features(WORLD.firms[firm], observed, as_of).digest()
    future = []
    for (source, metric), period_offset, lag, value in extra:
        period = as_of + dt.timedelta(days=period_offset)
        available = max(period, as_of) + dt.timedelta(days=lag)
        future.append(Observation(WORLD.firms[firm].org_id, source, metric, period, available, value))
    # plus everything the world itself holds for the months after the application
    later = WORLD.observations(firm, until_month=int(WORLD.apply_month[firm]) + 12)
    assert compute_features(WORLD.firms[firm], later + future, as_of).digest() == expected
