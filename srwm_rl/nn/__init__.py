"""Networks: memory layers (layers), recurrent cores behind one protocol and registry (cores), observation
encoders (encoders), action distributions, the actor-critic with its one ``step()`` (policy), and the
supervised few-shot learner (fewshot). State is always a value passed in and out, time-major tensors."""
