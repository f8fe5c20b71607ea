"""savgo-mjx: SAVGO and a SAC baseline on thousands of MJX environments in one jitted program.

Layout, in the order data flows: envs (separate package) -> trainer (rollout, replay insert,
updates) -> agent (networks, losses) -> train_loop (logging, evaluation, checkpoints).
"""
__version__ = "0.1.0"
