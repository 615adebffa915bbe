"""Property-based bad inputs (#29): every field of an embodiment file mutated (missing, extra,
wrong type, list for object, NaN); the loader raises only the project's EmbodimentError."""

from __future__ import annotations

import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ate_ros.core.embodiment import EmbodimentError, load_embodiment

SOURCE = "config/embodiments/sim_arm6.yaml"
BAD_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.just(math.nan),
                       st.just(-1.0), st.text(max_size=4), st.lists(st.integers(), max_size=3),
                       st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node[:2]):
            yield from _paths(v, (*prefix, i))


def _mutate(doc, path, how, value):
    if not path:
        return value
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    if how == "missing":
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


with open(SOURCE) as f:
    ORIGINAL = yaml.safe_load(f)
PATHS = [p for p in _paths(ORIGINAL)]


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(PATHS), how=st.sampled_from(["missing", "value"]), value=BAD_VALUES)
def test_mutated_embodiment_gives_only_embodiment_errors(tmp_path, path, how, value):
    doc = _mutate(yaml.safe_load(yaml.safe_dump(ORIGINAL)), path, how, value)
    f = tmp_path / "arm.yaml"
    f.write_text(yaml.safe_dump(doc))
    try:
        load_embodiment(f)
    except EmbodimentError:
        pass
    except Exception as exc:  # noqa: BLE001 - the property: nothing else escapes
        pytest.fail(f"{path} {how} {value!r}: {type(exc).__name__}: {exc}")
