"""srwm-rl: reinforcement-learning agents whose memory is a Self-Referential Weight Matrix.

The library's floors, each importing only the ones below it (README, Layout):
    ops   the maths: the SRWM recurrence and its faster paths, returns, V-trace, losses
    nn    layers, recurrent cores, encoders, the actor-critic
    run   configuration, checkpoints, the run directory, the training harness
    eval  rollouts, statistics, analysis, video
    app   the ``srwm-rl`` command (on top of the algorithms in ``agents``)
"""
