"""envs.cpu_linalg: MJX's batched Cholesky / triangular solves on CPU neither hang nor change."""
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import envs  # noqa: F401  (installs the lowerings)
from envs import cpu_linalg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _spd(batch: int, n: int, seed: int = 0) -> np.ndarray:
    m = np.random.default_rng(seed).normal(size=(batch, n, n)).astype(np.float32)
    return m @ m.transpose(0, 2, 1) + n * np.eye(n, dtype=np.float32)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs to run two kernels at once")
def test_two_large_batched_factorisations_in_one_program_do_not_hang():
    # Two independent Cholesky factorisations of 1024 9x9 matrices (the size of MJX's for 1024
    # HalfCheetahs) on a 2-thread pool: jaxlib's LAPACK kernels deadlocked here (most runs hung;
    # 20 calls made it near certain) before envs.cpu_linalg.
    script = textwrap.dedent("""
        import os
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:2]))
        import envs, jax, jax.numpy as jnp
        m = jax.random.normal(jax.random.PRNGKey(0), (1024, 9, 9))
        spd = m @ m.transpose(0, 2, 1) + 9 * jnp.eye(9)
        @jax.jit
        def f(a, b):
            ca, cb = jax.scipy.linalg.cho_factor(a), jax.scipy.linalg.cho_factor(b)
            return ca[0].sum() + cb[0].sum() + jax.scipy.linalg.cho_solve(ca, jnp.ones((1024, 9, 1))).sum()
        for _ in range(20):
            f(spd, 2 * spd).block_until_ready()
        print("done")
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "done" in result.stdout, result.stderr[-2000:]


@pytest.mark.parametrize("batch, n", [(1000, 9), (70, 23), (8, 9)])  # chunked, chunked, one LAPACK call
def test_factorisation_and_solve_match_scipy_at_every_size(batch, n):
    a = _spd(batch, n)
    b = np.random.default_rng(1).normal(size=(batch, n, 3)).astype(np.float32)
    chunked = cpu_linalg.cholesky_cost(a.shape) >= cpu_linalg.PARALLEL_WORK_FLOP
    assert chunked == (batch > 8)
    low = jax.jit(lambda x: jax.lax.linalg.cholesky(x, symmetrize_input=False))(a)
    x = jax.jit(lambda l, y: jax.lax.linalg.triangular_solve(l, y, left_side=True, lower=True))(low, b)
    for i in (0, batch // 2, batch - 1):  # first chunk, middle, the padded last chunk
        want_low = scipy.linalg.cholesky(a[i].astype(np.float64), lower=True)
        np.testing.assert_allclose(low[i], want_low, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(x[i], scipy.linalg.solve_triangular(want_low, b[i], lower=True),
                                   rtol=1e-3, atol=1e-4)


def test_chunks_stay_below_jaxlibs_parallel_threshold():
    # The lowering's chunk for a batch of 9x9 factorisations, and the cost model it relies on.
    assert cpu_linalg.cholesky_cost((1024, 9, 9)) == 1024 * 243 >= cpu_linalg.PARALLEL_WORK_FLOP
    assert cpu_linalg.cholesky_cost((823, 9, 9)) < cpu_linalg.PARALLEL_WORK_FLOP
    assert cpu_linalg.triangular_solve_cost((10, 23, 1), left_side=True) == 10 * 23 * 23
    text = jax.jit(lambda x: jax.lax.linalg.cholesky(x, symmetrize_input=False)).lower(
        jnp.zeros((1024, 9, 9))).as_text()
    assert "while" in text and "823x9x9" in text  # a sequential loop over chunks of 823
