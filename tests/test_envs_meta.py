"""In-context tasks: env checkers, disjoint task splits, task keeping, and each task's rules."""

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401  (registers srwm_rl/...)
from envs.meta import META_ENVS, BernoulliBandit, DarkKeyToDoor, DarkRoom, TMaze

SPLIT_ENVS = [i for i in META_ENVS if "CartPole" not in i]


@pytest.mark.parametrize("env_id", list(META_ENVS))
def test_gymnasium_and_sb3_env_checkers_pass(env_id):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    renders = "rgb_array" in gymnasium.make(env_id).unwrapped.metadata.get("render_modes", [])
    kwargs = {"render_mode": "rgb_array"} if renders else {}
    env = gymnasium.make(env_id, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any checker warning fails the test
        check_env(env.unwrapped)
        sb3_check_env(gymnasium.make(env_id).unwrapped, warn=True)
    if kwargs:
        env.reset(seed=0)
        frame = env.render()
        assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3


@pytest.mark.parametrize("make_env", [lambda s: DarkRoom(task_split=s), lambda s: DarkKeyToDoor(task_split=s),
                                      lambda s: TMaze(task_split=s), lambda s: BernoulliBandit(task_split=s,
                                                                                               num_tasks=50)])
def test_train_and_test_task_sets_are_disjoint_and_sampled_from_their_split(make_env):
    train, test = make_env("train"), make_env("test")
    ids = {s: set(e.task_ids(s).tolist()) for s, e in (("train", train), ("test", test))}
    assert ids["train"] and ids["test"] and not ids["train"] & ids["test"]
    for split, env in (("train", train), ("test", test)):
        env.reset(seed=0)
        seen = set()
        for _ in range(200):
            env.reset()
            seen.add(env.task_id)
        assert seen <= ids[split] and len(seen) > 1


def test_task_splits_are_disjoint_in_task_parameters():
    """Not only the ids: the goals (dark room), key/door pairs and bandit arms of the splits differ."""
    room = DarkRoom()
    goals = {s: {tuple(divmod(int(i), 9)) for i in room.task_ids(s)} for s in ("train", "test")}
    assert not goals["train"] & goals["test"] and len(goals["train"] | goals["test"]) == 81
    kd = DarkKeyToDoor()
    assert len(kd.task_ids("train")) + len(kd.task_ids("test")) == 81 * 80
    arms = {}
    for split in ("train", "test"):
        env = BernoulliBandit(task_split=split)
        env.reset(seed=1)
        arms[split] = set()
        for _ in range(100):
            env.reset()
            arms[split].add(tuple(env.arm_probs))
    assert not arms["train"] & arms["test"]


@pytest.mark.parametrize("cls", [DarkRoom, DarkKeyToDoor])
def test_test_fraction_zero_trains_on_every_task_and_has_no_test_split(cls):
    """The control without held-out tasks: the training set is every task; a test env is refused."""
    full, split = cls(test_fraction=0.0), cls()
    every = np.union1d(split.task_ids("train"), split.task_ids("test"))
    np.testing.assert_array_equal(full.task_ids("train"), every)
    assert len(full.task_ids("test")) == 0
    full.reset(seed=0)
    held_out = int(split.task_ids("test")[0])
    full.reset(options={"task_id": held_out})  # a goal the split holds out is a training task here
    assert full.task_id == held_out
    with pytest.raises(ValueError, match=r"task_split='test' is not valid with test_fraction=0.*allowed"):
        cls(test_fraction=0, task_split="test")
    with pytest.raises(ValueError, match=r"test_fraction=1.0 is not valid; expected 0 <= test_fraction < 1"):
        cls(test_fraction=1.0)


def test_bad_task_split_and_parameters_name_the_field():
    with pytest.raises(ValueError, match="task_split='val'.*'train', 'test'"):
        DarkRoom(task_split="val")
    with pytest.raises(ValueError, match="num_arms=1"):
        BernoulliBandit(num_arms=1)
    with pytest.raises(ValueError, match="min_corridor_length=9.*corridor_length=4"):
        TMaze(corridor_length=4, min_corridor_length=9)
    with pytest.raises(ValueError, match="not in task_split='test'"):
        DarkRoom(task_split="test").reset(options={"task_id": int(DarkRoom().task_ids("train")[0])})


@pytest.mark.parametrize("cls", [DarkRoom, DarkKeyToDoor, TMaze, BernoulliBandit])
def test_keep_task_option_keeps_the_task(cls):
    env = cls()
    env.reset(seed=0)
    task = env.task_id
    for _ in range(10):
        env.reset(options={"keep_task": True})
        assert env.task_id == task
    assert len({env.reset()[1]["task_id"] for _ in range(20)}) > 1


def test_dark_room_reward_every_step_on_the_goal():
    env = DarkRoom()
    obs, _ = env.reset(seed=0, options={"task_id": int(env.task_ids("train")[0])})
    np.testing.assert_array_equal(obs, [4, 4])
    goal = tuple(env.goal)
    path = [2 if goal[0] > 4 else 1] * abs(goal[0] - 4) + [4 if goal[1] > 4 else 3] * abs(goal[1] - 4)
    total = 0.0
    for t in range(20):
        obs, r, term, trunc, _ = env.step(path[t] if t < len(path) else 0)
        total += r
        assert not term and trunc == (t == 19)
    assert len(path) == 8 and total == 20 - len(path) + 1  # rewarded from the step that reaches it


def test_key_to_door_rewards_key_once_then_door_terminates():
    env = DarkKeyToDoor()
    env.reset(seed=0)
    env.key, env.door, env.pos = np.array([0, 1]), np.array([0, 3]), np.array([0, 0])
    rewards = [env.step(a)[1:3] for a in (4, 3, 4, 4, 4)]  # key, back, key again (no reward), on, door
    assert [r for r, _ in rewards] == [1.0, 0.0, 0.0, 0.0, 1.0]
    assert [t for _, t in rewards] == [False] * 4 + [True]


def test_tmaze_cue_then_decision():
    env = TMaze(corridor_length=3)
    for cue in (0, 1):
        obs, _ = env.reset(seed=0, options={"task_id": 2 * 3 + cue})
        assert obs[cue] == 1 and obs[1 - cue] == 0
        for _ in range(3):
            obs, r, term, trunc, _ = env.step(0)
        np.testing.assert_array_equal(obs, [0, 0, 1])
        _, r, term, _, _ = env.step(2 + cue)
        assert r == 1.0 and term
        env.reset(options={"keep_task": True})
        [env.step(0) for _ in range(3)]
        assert env.step(3 - cue)[1:3] == (0.0, True)
    test = TMaze(corridor_length=3, task_split="test")
    assert {int(i) // 2 for i in test.task_ids("test")} == {4, 5, 6}


def test_bandit_regret_and_reward_rates():
    env = BernoulliBandit(num_arms=3, num_pulls=4000)
    env.reset(seed=0)
    p = env.arm_probs.copy()
    for arm in range(3):
        env.reset(options={"keep_task": True})
        steps = [env.step(arm) for _ in range(4000)]
        assert abs(np.mean([s[1] for s in steps]) - p[arm]) < 0.03
        assert np.allclose([s[4]["regret"] for s in steps], p.max() - p[arm])
        assert [s[2] for s in steps] == [False] * 3999 + [True]
        assert steps[0][0][0] == pytest.approx(1 / 4000) and steps[-1][0][0] == 1.0  # time feature


def test_cartpole_without_velocity_is_cartpole_position_and_angle():
    full, novel = gymnasium.make("CartPole-v1"), gymnasium.make("srwm_rl/CartPoleNoVel-v0")
    a, _ = full.reset(seed=4)
    b, _ = novel.reset(seed=4)
    assert novel.observation_space.shape == (2,) and novel.spec.max_episode_steps == 500
    for t in range(50):
        np.testing.assert_array_equal(b, a[[0, 2]])
        a, ra, ta, _, _ = full.step(t % 2)
        b, rb, tb, _, _ = novel.step(t % 2)
        assert (ra, ta) == (rb, tb)
        if ta:
            break
    np.testing.assert_array_equal(b, a[[0, 2]])
