"""Keeps MJX's batched Cholesky and triangular solves from hanging the CPU backend.

MJX's physics factorises a mass matrix and the Newton solver's Hessian per env
(`jax.scipy.linalg.cho_factor` / `cho_solve`). On CPU, jaxlib runs these as LAPACK kernels
that, once `batch x cost per matrix` reaches 200,000 FLOP, split the batch into tasks on
XLA's intra-op thread pool and block their own pool thread until the tasks are done. When as
many such kernels run at once as the pool has threads (two Cholesky kernels were in flight in
the hung program; a 2-core machine has 2 threads), every thread waits for tasks that
no thread is left to run: the program hangs for ever without an error (jax 0.10.2; seen with
HalfCheetah at 8 x 128 envs; Humanoid reaches the size at ~50 envs).

`install()` re-registers the CPU lowering of both primitives: a batch above that size runs as
a sequence of LAPACK calls on chunks below it, each of which then runs inline in its thread
and touches no pool. The results are the same kernels' on the same matrices; a large batch
loses only LAPACK's own split over the cores (docs/ENVS.md). GPU lowerings are untouched.
It uses jax's private lowering functions: if a jax release renames them, lowering a CPU
program raises AttributeError and `tests/test_cpu_linalg.py` fails, rather than letting the
hang come back unnoticed.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax._src.lax import linalg as _linalg
from jax.interpreters import mlir

# jaxlib's kMinWorkPerTask (jaxlib/cpu/lapack_kernels.cc): a LAPACK kernel whose batch costs less
# runs it in the calling thread, without the pool.
PARALLEL_WORK_FLOP = 200_000


def cholesky_cost(shape: tuple[int, ...]) -> int:
    """jaxlib's FLOP estimate of a batched Cholesky of `shape` [..., n, n]: batch x n^3 / 3."""
    n = shape[-1]
    return math.prod(shape[:-2]) * (n * n * n // 3)


def triangular_solve_cost(b_shape: tuple[int, ...], left_side: bool) -> int:
    """jaxlib's estimate for solving against `b_shape` [..., rows, cols]: batch x rows x cols x
    (rows if the triangular matrix is on the left, else cols)."""
    rows, cols = b_shape[-2], b_shape[-1]
    return math.prod(b_shape[:-2]) * rows * cols * (rows if left_side else cols)


def _in_serial_chunks(kernel, cost_per_item: int, operands, pads):
    """`kernel(*operands)` over the flattened batch in sequential chunks that each cost less
    than PARALLEL_WORK_FLOP, so that every LAPACK call runs inline. `pads` fills the batch up to
    a whole number of chunks (one harmless matrix per operand: identity or zeros)."""
    batch_shape = operands[0].shape[:-2]
    batch = math.prod(batch_shape)
    chunk = max(1, (PARALLEL_WORK_FLOP - 1) // max(cost_per_item, 1))
    chunks = -(-batch // chunk)
    flat = []
    for x, pad in zip(operands, pads):
        x = x.reshape((batch, *x.shape[-2:]))
        filler = jnp.broadcast_to(pad(x), (chunks * chunk - batch, *x.shape[-2:]))
        flat.append(jnp.concatenate([x, filler]).reshape((chunks, chunk, *x.shape[-2:])))
    out = jax.lax.map(lambda xs: kernel(*xs), tuple(flat))
    return out.reshape((chunks * chunk, *out.shape[-2:]))[:batch].reshape((*batch_shape, *out.shape[-2:]))


def _identity(x):
    return jnp.eye(x.shape[-1], dtype=x.dtype)


def _zeros(x):
    return jnp.zeros(x.shape[-2:], x.dtype)


def _cholesky(ctx, x):
    shape = ctx.avals_in[0].shape
    if cholesky_cost(shape) < PARALLEL_WORK_FLOP:
        return _linalg._cholesky_cpu_lowering(ctx, x)
    per_item = cholesky_cost(shape[-2:])
    chunked = lambda x: _in_serial_chunks(_linalg.cholesky_p.bind, per_item, (x,), (_identity,))  # noqa: E731
    return mlir.lower_fun(chunked, multiple_results=False)(ctx, x)


def _triangular_solve(ctx, a, b, *, left_side, **params):
    b_shape = ctx.avals_in[1].shape
    if triangular_solve_cost(b_shape, left_side) < PARALLEL_WORK_FLOP:
        return _linalg._triangular_solve_cpu_lower(ctx, a, b, left_side=left_side, **params)
    per_item = triangular_solve_cost(b_shape[-2:], left_side)
    solve = lambda a, b: _linalg.triangular_solve_p.bind(a, b, left_side=left_side, **params)  # noqa: E731
    chunked = lambda a, b: _in_serial_chunks(solve, per_item, (a, b), (_identity, _zeros))  # noqa: E731
    return mlir.lower_fun(chunked, multiple_results=False)(ctx, a, b)


def install() -> None:
    """Registers the two CPU lowerings (idempotent; affects programs lowered afterwards)."""
    mlir.register_lowering(_linalg.cholesky_p, _cholesky, platform="cpu")
    mlir.register_lowering(_linalg.triangular_solve_p, _triangular_solve, platform="cpu")
