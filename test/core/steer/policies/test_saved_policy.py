"""The saved-policy folder's config reader: torch-free, and its errors name file and field."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ate_ros.core.deploy.policy_factory import saved_policy_settings
from ate_ros.core.steer.policies import VLAConfig, VLAPolicy
from ate_ros.core.steer.policies.saved_policy import read_policy_config, read_policy_meta
from ate_ros.core.training.files import CheckpointError

CFG = dict(chunk_size=6, n_action_steps=4, camera_names=[], env_state_dim=5, d_model=16,
           n_heads=2, n_layers=1, ffn_dim=32, text_encoder="hash", text_dim=8)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pol") / "p"
    VLAPolicy(VLAConfig(**CFG)).save_pretrained(folder)
    return folder


def _edited(saved, tmp_path, edit) -> str:
    """A copy of the saved folder's config.json, changed by ``edit(dict)``."""
    meta = json.loads((saved / "config.json").read_text())
    edit(meta)
    (tmp_path / "config.json").write_text(json.dumps(meta))
    return str(tmp_path)


def test_the_graph_reads_a_saved_policy_without_importing_torch(saved):
    code = ("import sys\n"
            "from ate_ros.core.deploy.policy_factory import saved_policy_settings\n"
            f"s = saved_policy_settings({str(saved)!r})\n"
            "print(s.chunk_size, s.n_action_steps, s.env_state_dim, s.replan_steps)\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'torch')\n"
            "assert not loaded, loaded\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ}, timeout=120)
    assert run.returncode == 0, run.stderr
    expected = saved_policy_settings(str(saved))
    assert run.stdout.split() == [str(v) for v in (6, 4, 5, expected.replan_steps)]
    assert read_policy_config(saved) == VLAConfig(**CFG)


def test_malformed_config_names_the_file_and_the_field(saved, tmp_path):
    file = str(tmp_path / "config.json")

    bad_width = _edited(saved, tmp_path, lambda m: m["policy"].update(chunk_size="six"))
    with pytest.raises(CheckpointError, match="policy.chunk_size must be a whole number") as e:
        saved_policy_settings(bad_width)
    assert file in str(e.value) and "'six'" in str(e.value)

    bad_head = _edited(saved, tmp_path, lambda m: m["policy"].update(head="transformer"))
    with pytest.raises(CheckpointError, match="invalid 'policy' section.*head must be one of"
                       ) as e:
        read_policy_config(bad_head)
    assert file in str(e.value)

    typo = _edited(saved, tmp_path, lambda m: m["policy"].update(chunk_sise=6))
    with pytest.raises(CheckpointError, match="chunk_sise"):
        read_policy_config(typo)

    no_section = _edited(saved, tmp_path, lambda m: m.pop("policy"))
    with pytest.raises(CheckpointError, match="no 'policy' section") as e:
        read_policy_meta(no_section)
    assert file in str(e.value)

    other = _edited(saved, tmp_path, lambda m: m.update(type="lerobot.act"))
    with pytest.raises(CheckpointError, match="not an ate_ros VLA policy folder "
                       r"\(type='lerobot.act'"):
        saved_policy_settings(other)

    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="invalid JSON") as e:
        saved_policy_settings(str(tmp_path))
    assert file in str(e.value)


def test_no_folder_gives_unknown_settings_and_the_loader_names_it(tmp_path):
    missing = tmp_path / "nowhere"
    assert saved_policy_settings(str(missing)).chunk_size == 0
    with pytest.raises(CheckpointError, match=f"not found: {missing}"):
        read_policy_config(missing)
