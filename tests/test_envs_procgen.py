"""The Procgen adapter against raw ``ProcgenGym3Env``: equality, multi-game batches, levels, trials, errors."""

import numpy as np
import pytest

pytest.importorskip("procgen")
from procgen import ProcgenGym3Env  # noqa: E402

import envs  # noqa: E402
from envs.api import spawn_seeds  # noqa: E402
from envs.procgen_env import GAMES, ProcgenVecEnv, read_info, valid_modes  # noqa: E402

OPTS = {"distribution_mode": "easy", "num_levels": 5, "start_level": 40}


def test_adapter_equals_raw_gym3():
    """Same seed and actions: the adapter returns exactly what gym3 does, plus bookkeeping."""
    env = envs.make("procgen:maze", 6, seed=11, **OPTS)
    raw = ProcgenGym3Env(num=6, env_name="maze", rand_seed=spawn_seeds(11, 1)[0], **OPTS)
    np.testing.assert_array_equal(env.reset(), raw.observe()[1]["rgb"])
    rng = np.random.default_rng(0)
    ret, ends = np.zeros(6), 0
    for _ in range(300):
        a = rng.integers(0, 15, 6)
        obs, rew, term, trunc, info = env.step(a)
        raw.act(a.astype(np.int32))
        r, o, f = raw.observe()
        np.testing.assert_array_equal(obs, o["rgb"])
        np.testing.assert_array_equal(rew, r)
        np.testing.assert_array_equal(term, f)
        np.testing.assert_array_equal(env.first, f)
        assert not trunc.any() and "final_obs" not in info
        gi = raw.get_info()
        np.testing.assert_array_equal(info["level_seed"], [d["level_seed"] for d in gi])
        np.testing.assert_array_equal(info["prev_level_seed"][f], np.array([d["prev_level_seed"] for d in gi])[f])
        np.testing.assert_array_equal(info["level_complete"], f & np.array([d["prev_level_complete"] for d in gi], bool))
        ret += r
        np.testing.assert_allclose(info["episode_return"][f], ret[f])
        ret[f] = 0
        ends += f.sum()
        assert np.all((info["level_seed"] >= 40) & (info["level_seed"] < 45))
    assert ends > 0 and np.array_equal(env.get_frames(), obs)


def test_read_info_equals_get_info():
    raw = ProcgenGym3Env(num=3, env_name="coinrun", rand_seed=0)
    raw.act(np.zeros(3, np.int32))
    raw.observe()
    fast = read_info(raw)
    for k in fast:
        np.testing.assert_array_equal(fast[k], [d[k] for d in raw.get_info()])


def test_multi_game_batch_split_and_game_info():
    env = envs.make("procgen:coinrun+bigfish+starpilot", 8, seed=0, distribution_mode="easy")
    assert env.counts == [3, 3, 2]
    env.reset()
    _, _, _, _, info = env.step(np.zeros(8, int))
    assert info["game"].tolist() == ["coinrun"] * 3 + ["bigfish"] * 3 + ["starpilot"] * 2
    # each block is exactly that game's own gym3 env with the per-game seed
    seed = spawn_seeds(0, 3)[1]
    raw = ProcgenGym3Env(num=3, env_name="bigfish", rand_seed=seed, distribution_mode="easy")
    raw.act(np.zeros(3, np.int32))
    np.testing.assert_array_equal(env.get_frames()[3:6], raw.observe()[1]["rgb"])
    with pytest.raises(ValueError, match="num_envs=2 is not valid for 3 games"):
        envs.make("procgen:coinrun+bigfish+starpilot", 2)


def test_reset_recreates_deterministically():
    env = envs.make("procgen:coinrun", 2, seed=5)
    a = env.reset()
    env.step(np.ones(2, int))
    b = env.reset(seed=5)  # procgen cannot reset in place: re-created, same seed -> same start
    np.testing.assert_array_equal(a, b)
    assert env.first.all()
    other = envs.make("procgen:coinrun", 2, seed=5)
    other.reset()
    for e in (env, other):  # reset(None) after use draws its seed from the factory seed: reproducible
        e.step(np.ones(2, int))
    np.testing.assert_array_equal(env.reset(), other.reset())


def test_trials_fix_one_level_per_trial():
    env = envs.make("procgen:maze", 3, seed=0, trial_episodes=2, **OPTS)
    env.reset()
    rng = np.random.default_rng(1)
    trials_seen = 0
    levels = env.unwrapped._level.copy()
    for _ in range(1500):
        _, _, term, _, info = env.step(rng.integers(0, 15, 3))
        inner = info["inner_episode_done"] & ~term  # inner end inside a trial: same level continues
        np.testing.assert_array_equal(info["level_seed"][inner], levels[inner])
        assert np.all((info["level_seed"] >= 40) & (info["level_seed"] < 45))
        levels = info["level_seed"].copy()
        trials_seen += term.sum()
    assert trials_seen > 0


def test_distribution_modes_and_games_are_validated_before_cpp():
    with pytest.raises(ValueError, match="distribution_mode='memory' is not valid for procgen game 'coinrun'; "
                                         "allowed: easy, hard, exploration"):
        envs.make("procgen:coinrun", 2, distribution_mode="memory")
    with pytest.raises(ValueError, match="'extreme'.*allowed: easy, hard$"):
        envs.make("procgen:bigfish", 2, distribution_mode="extreme")
    with pytest.raises(ValueError, match="Did you mean coinrun.*Valid games: bigfish"):
        envs.make("procgen:coinrn", 2)
    with pytest.raises(ValueError, match=r"procgen options \['levels'\] are not valid; allowed: num_levels"):
        envs.make("procgen:coinrun", 2, levels=3)
    with pytest.raises(ValueError, match="num_levels=-1"):
        envs.make("procgen:coinrun", 2, num_levels=-1)
    with pytest.raises(ValueError, match=r"Discrete\(15\) allows \[0, 14\]"):
        ProcgenVecEnv("coinrun", 2, seed=0).step(np.array([0, 15]))
    assert "memory" in valid_modes("maze") and "extreme" in valid_modes("starpilot") and len(GAMES) == 16


def test_memory_and_exploration_modes_run():
    env = envs.make("procgen:heist", 2, seed=0, distribution_mode="memory")
    env.reset()
    assert env.step(np.zeros(2, int))[0].shape == (2, 64, 64, 3)
    env = envs.make("procgen:maze", 2, seed=0, distribution_mode="exploration")
    env.reset()
    _, _, _, _, info = env.step(np.zeros(2, int))
    assert len(set(info["level_seed"].tolist())) == 1


def test_missing_procgen_says_how_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_procgen(name, *args, **kwargs):
        if name == "procgen" or name.startswith("procgen."):
            raise ImportError("No module named 'procgen'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_procgen)
    with pytest.raises(ImportError, match="pip install procgen2"):
        envs.make("procgen:coinrun", 2)


def test_no_gym_banner_on_procgen_commands():
    """procgen imports the old gym, whose import prints a 'Gym has been unmaintained' notice."""
    import subprocess
    import sys
    code = "import envs; e = envs.make('procgen:coinrun', 1, 0); e.reset(); e.close()"
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    assert "unmaintained" not in err and "Gymnasium" not in err, err


def test_action_names_are_procgens_key_combinations():
    from envs.procgen_env import ACTION_NAMES, procgen_env_class
    combos = procgen_env_class().get_combos(None)
    assert ACTION_NAMES == ["+".join(c) or "NOOP" for c in combos]
    env = envs.make("procgen:coinrun", 1, 0)
    try:
        assert env.action_names() == ACTION_NAMES
    finally:
        env.close()
