"""Benchmarks of the PhaseShift step against optax, torch and the memory-bandwidth limit.

Run one part with ``python -m benchmarks.<part>`` (``step_cost``, ``cpu_measures``,
``compile_time``, ``memory``, ``end_to_end``, ``bandwidth``, ``side_by_side``) or the
first ones together with ``python -m benchmarks.run_all``; see ``benchmarks/README.md``.
"""

import os

# JAX and torch contenders are timed interleaved in one process. By default the
# OpenMP threads of torch busy-wait for a while after each parallel loop, taking
# the cores from whatever JAX runs next; passive waiting leaves them free. Set
# before torch is imported (an explicit setting in the environment wins).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
