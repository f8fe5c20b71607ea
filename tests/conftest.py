"""Test-wide settings: full float32 matmuls, and one persistent compilation cache per session so
that tests building the same program (same config, new Trainer) compile it once."""
import os
import tempfile

os.environ.setdefault("SAVGO_MJX_CACHE", tempfile.mkdtemp(prefix="savgo-mjx-test-cache-"))

from savgo_mjx.train_loop import configure_jax  # noqa: E402

configure_jax()
