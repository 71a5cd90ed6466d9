"""The training algorithms, one file and one ``Algorithm`` record each (algorithm.py): recurrent PPO
(ppo), IMPALA / V-trace (impala, impala_actor), Stable-Baselines3 baselines (sb3_baselines) and
supervised few-shot meta-training (fewshot). ``agents.registry`` lists them and builds ``TrainConfig``."""
