"""Write tiny checkpoints with the pre-renovation code and the outputs they must reproduce."""
import json, sys, torch, numpy as np
sys.path.insert(0, ".")  # run from the root of a checkout of 0ddc179
from srwm_rl.app.cli import main
SMALL = ["--core.hidden_size", "16", "--core.num_heads", "2", "--core.num_layers", "1", "--core.ff_mult", "2",
         "--policy.mlp_hidden", "16", "--torch_threads", "1", "--no-progress", "--checkpoint_every", "1"]
assert main(["train", "--algo", "ppo", "--env.id", "srwm_rl/DarkRoom-v0", "--env.kwargs", '{"size": 5, "episode_length": 12}',
             "--env.trial_episodes", "2", "--env.num_envs", "4", "--ppo.num_steps", "24", "--ppo.num_minibatches", "2",
             "--env.normalize_obs", "--total_steps", "192", "--run_dir", "runs/ppo", *SMALL]) == 0
assert main(["train", "--algo", "impala", "--env.id", "srwm_rl/CartPoleNoVel-v0", "--impala.num_actors", "1",
             "--impala.envs_per_actor", "2", "--impala.batch_size", "2", "--impala.unroll_length", "8",
             "--no-policy.prev_action", "--total_steps", "64", "--run_dir", "runs/impala", *SMALL]) == 0
assert main(["train", "--algo", "fewshot", "--fewshot.batch_size", "2", "--fewshot.eval_tasks", "4", "--fewshot.eval_every", "1",
             "--fewshot.encoder_features", "8", "--fewshot.eval_sources", "glyphs", "--total_steps", "40",
             "--run_dir", "runs/fewshot", *SMALL]) == 0
from srwm_rl.run.common import load_agent
from agents.fewshot import load_fewshot
out = {}
for name in ("ppo", "impala"):
    cfg, policy, ckpt = load_agent(f"runs/{name}")
    g = torch.Generator().manual_seed(0)
    space = policy.obs_space
    B, T = 3, 5
    if isinstance(space, __import__("gymnasium").spaces.Dict):
        obs = {"obs": torch.rand(T, B, *space["obs"].shape, generator=g),
               "prev_action": torch.randint(0, space["prev_action"].n, (T, B), generator=g),
               "prev_reward": torch.rand(T, B, 1, generator=g)}
        inp = {k: v.tolist() for k, v in obs.items()}
    else:
        obs = torch.rand(T, B, *space.shape, generator=g); inp = obs.tolist()
    first = torch.zeros(T, B, dtype=torch.bool); first[0] = True
    with torch.no_grad():
        dist, value, _ = policy(obs, policy.initial_state(B), first)
    out[name] = {"obs": inp, "logits": dist.logits.tolist(), "value": value.tolist(),
                 "normalizers": [{k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in s.items()} for s in ckpt["normalizers"]]}
cfg, model, ckpt = load_fewshot("runs/fewshot")
g = torch.Generator().manual_seed(0)
x = torch.rand(6, 2, model.input_size, generator=g)
with torch.no_grad():
    logits, _ = model(x)
out["fewshot"] = {"x": x.tolist(), "logits": logits.tolist()}
json.dump(out, open("expected.json", "w"))
print("ok")
