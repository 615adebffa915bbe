"""Property-based bad inputs (#29): every field of an embodiment file mutated (missing, extra,
wrong type, wrong shape, list for object, NaN); the loader raises only the project's
EmbodimentError. Outcomes are recorded as in test_malformed_inputs.py."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.mutations import MUTATION_CLASSES, OutcomeRecord, describe, field_paths, mutate

from ate_ros.core.embodiment import EmbodimentError, load_embodiment

SOURCE = "config/embodiments/sim_arm6.yaml"
TARGET = "embodiment file (load_embodiment)"
RECORD = OutcomeRecord("embodiment_fuzz")

with open(SOURCE) as f:
    ORIGINAL = yaml.safe_load(f)
PATHS = list(field_paths(ORIGINAL))


@pytest.fixture(scope="module", autouse=True)
def _record():
    yield
    RECORD.write()


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(PATHS), how=st.sampled_from(MUTATION_CLASSES),
       pick=st.integers(0, 50))
def test_mutated_embodiment_gives_only_embodiment_errors(tmp_path, path, how, pick):
    doc = mutate(ORIGINAL, path, how, pick)
    f = tmp_path / "arm.yaml"
    f.write_text(yaml.safe_dump(doc))
    try:
        load_embodiment(f)
    except EmbodimentError as exc:
        assert str(f) in str(exc) or "arm.yaml" in str(exc), exc
        RECORD.add(TARGET, how, "project error")
        return
    except Exception as exc:  # noqa: BLE001 - the property: nothing else escapes
        RECORD.add(TARGET, how, "escaped")
        pytest.fail(f"{describe(path, how, pick)}: {type(exc).__name__}: {exc}")
    RECORD.add(TARGET, how, "accepted")
