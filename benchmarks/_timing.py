"""Timing helpers shared by env_throughput.py and train_throughput.py.

Both scripts compile every measurement first and then time them round-robin (repeat 1 of every
measurement, then repeat 2, ...), so that the load of a shared machine falls on all of them alike;
the best call is kept. A measurement is anything with `row` (a dict; `row["error"]` set stops
it), `run()` (one timed call that blocks until the device is done) and `times` (a list).
"""
from __future__ import annotations

import os
import statistics
import time
import traceback
from typing import Any, Callable, Iterable, Optional


def error_text(e: BaseException) -> str:
    """`Type: message`, first line only, at most 300 characters: what an error row records."""
    return f"{type(e).__name__}: {e}".strip().splitlines()[0][:300]


def attempt(what: str, prepare: Callable[[], Any], errors: list[dict], error_row: dict) -> Optional[Any]:
    """Compiles one measurement: `prepare()` returns a bench (or a tuple whose first item is one)
    after its first call. If it raises, the error is printed (with the traceback when
    BENCH_TRACEBACK is set), `error_row` plus `error` is appended to `errors`, and the result is
    None: the other measurements still run."""
    print(f"  compiling {what} ...", flush=True)
    try:
        out = prepare()
    except Exception as e:
        msg = error_text(e)
        print(f"  FAILED {what}: {msg}", flush=True)
        if os.environ.get("BENCH_TRACEBACK"):
            traceback.print_exc()
        errors.append(dict(error_row, error=msg))
        return None
    bench = out[0] if isinstance(out, tuple) else out
    print(f"    first call {bench.row['first_call_s']:.1f} s", flush=True)
    return out


def time_round_robin(benches: Iterable[Any], repeats: int) -> None:
    """`repeats` rounds over `benches`; each round calls every bench's `run()` once and appends
    its wall time to `times`. A bench whose call raises gets `row["error"]` and drops out."""
    benches = list(benches)
    for _ in range(repeats):
        for b in benches:
            if b.row.get("error"):
                continue
            try:
                t0 = time.perf_counter()
                b.run()
                b.times.append(time.perf_counter() - t0)
            except Exception as e:
                b.row["error"] = error_text(e)


def timing_stats(times: list[float]) -> dict[str, Any]:
    """best_s (what the throughput figures use), median_s and the number of timed calls."""
    return dict(best_s=min(times), median_s=statistics.median(times), repeats=len(times))
