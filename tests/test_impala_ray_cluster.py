"""IMPALA on a two-node Ray cluster on one machine (``ray.cluster_utils.Cluster``): the learner joins by
address, the actors are placed by a custom resource on the node that is not the head."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

ray = pytest.importorskip("ray")

from ray.cluster_utils import Cluster  # noqa: E402

from agents.impala_ray import RayActorPool  # noqa: E402
from agents.registry import train  # noqa: E402
from test_impala import small_cfg  # noqa: E402


@pytest.mark.slow
def test_actors_run_on_the_worker_node_of_a_two_node_cluster(tmp_path, monkeypatch):
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=2, resources={"actors": 2})
    cluster.wait_for_nodes()
    head = cluster.head_node.node_id
    assert worker.node_id != head
    placed = []
    orig = RayActorPool.start

    def start(self):
        orig(self)
        placed.extend(ray.get([a.where.remote() for a in self.actors]))

    monkeypatch.setattr(RayActorPool, "start", start)
    try:
        base = small_cfg(backend="ray")
        cfg = replace(base, total_steps=6 * 32,
                      ray=replace(base.ray, address=cluster.address, actor_resources={"actors": 1}))
        result = train(cfg, tmp_path, progress=False)
        assert not ray.is_initialized(), "the run ended the connection it made"
    finally:
        cluster.shutdown()
    assert result["global_step"] >= cfg.total_steps
    assert len(placed) == 2 and {p["node"] for p in placed} == {worker.node_id}
    assert torch.load(tmp_path / "checkpoints" / "latest.pt", weights_only=True)["global_step"] == result["global_step"]
