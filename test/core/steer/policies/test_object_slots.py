"""Object-slot tokens of the low-dimensional track: the instruction picks the object it names.

The failure this guards against was measured on ``pick_color``: with one token from the whole
environment state, chunks predicted for the named colour and for the other colour were about
equally far from the demonstration. Here a tiny model must read out the offset of the slot the
instruction names; without the instruction's attention it cannot beat guessing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support.tiny_policy import tiny_vla_config

from ate_ros.core.policy_contract import PolicyObservation
from ate_ros.core.steer.policies import VLAPolicy, load_policy
from ate_ros.core.steer.policies.object_slots import ObjectSlotEncoder

SLOTS, SIZE, REST = 4, 4, 3
E = SLOTS * SIZE + REST


def _scenes(n: int, rng: np.random.Generator):
    """Two of four slots present with random offsets; the instruction names one of them."""
    env = np.zeros((n, E), np.float32)
    named = np.empty(n, np.int64)
    for i in range(n):
        two = rng.choice(SLOTS, 2, replace=False)
        for s in two:
            env[i, s * SIZE] = 1.0
            env[i, s * SIZE + 1:s * SIZE + 4] = rng.uniform(-1, 1, 3)
        env[i, -REST:] = rng.uniform(-1, 1, REST)
        named[i] = two[rng.integers(2)]
    target = env[np.arange(n)[:, None], named[:, None] * SIZE + np.arange(1, 4)]
    return torch.from_numpy(env), torch.from_numpy(named), torch.from_numpy(target)


def _fit(use_text: bool, steps: int = 120) -> float:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    d = 32
    enc = ObjectSlotEncoder(E, SLOTS, SIZE, d)
    words = torch.nn.Embedding(SLOTS, d)  # stands in for the instruction embedding
    head = torch.nn.Linear(d, 3)
    params = [*enc.parameters(), *words.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=3e-3)
    for _ in range(steps):
        env, named, target = _scenes(128, rng)
        text = words(named if use_text else torch.zeros_like(named))
        loss = torch.nn.functional.mse_loss(head(enc(env, text)[:, 0]), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    env, named, target = _scenes(512, rng)
    with torch.no_grad():
        text = words(named if use_text else torch.zeros_like(named))
        return float(torch.nn.functional.mse_loss(head(enc(env, text)[:, 0]), target))


def test_the_named_token_reads_the_object_the_instruction_names():
    grounded, blind = _fit(True), _fit(False)
    # Without the instruction the best guess is the mean of the two present offsets, which
    # leaves 1/6 per coordinate (two U(-1, 1) offsets); reading the named one leaves little.
    assert blind > 0.12, blind
    assert grounded < 0.05, (grounded, blind)


def test_token_count_and_shapes():
    enc = ObjectSlotEncoder(E, SLOTS, SIZE, 16)
    out = enc(torch.zeros(2, E), torch.zeros(2, 16))
    assert out.shape == (2, ObjectSlotEncoder.tokens_for(E, SLOTS, SIZE), 16) == (2, 6, 16)
    assert ObjectSlotEncoder.tokens_for(SLOTS * SIZE, SLOTS, SIZE) == 5  # no rest token
    tok, w = enc.slot_weights(torch.zeros(2, E), torch.randn(2, 16))
    assert tok.shape == (2, SLOTS, 16)
    torch.testing.assert_close(w.sum(-1), torch.ones(2))


def _cfg(**kw):
    return tiny_vla_config(**{"camera_names": [], "env_state_dim": E, "env_object_slots": SLOTS,
                              "n_layers": 1, "num_train_timesteps": 20,
                              "num_inference_steps": 4, "action_mode": "relative", **kw})


def test_slot_policy_saves_loads_and_follows_the_instruction(tmp_path):
    torch.manual_seed(3)
    m = VLAPolicy(_cfg()).eval()
    mask = np.zeros(128, bool)
    mask[:3] = True
    env = np.random.default_rng(1).uniform(-1, 1, E).astype(np.float32)

    def obs(instruction: str) -> PolicyObservation:
        return PolicyObservation(images={}, qpos=np.zeros(128, np.float32), mask=mask,
                                 instruction=instruction, env_state=env)

    a = m.predict_chunk(obs("touch the red block"), seed=0)
    m.save_pretrained(tmp_path / "p")
    m2 = load_policy(tmp_path / "p")
    assert m2.config.env_object_slots == SLOTS and m2.config.env_slot_size == SIZE
    np.testing.assert_array_equal(a, m2.predict_chunk(obs("touch the red block"), seed=0))
    assert not np.array_equal(a, m2.predict_chunk(obs("touch the blue block"), seed=0))


def test_slot_config_validation():
    with pytest.raises(ValueError, match="do not fit env_state_dim"):
        _cfg(env_object_slots=5)
    with pytest.raises(ValueError, match="env_object_slots must be >= 0"):
        _cfg(env_object_slots=-1)
