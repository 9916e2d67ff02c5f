"""phaseshift_jax: the PhaseShift optimizer and torch-exact classic optimizers for optax."""

from phaseshift_jax import compat
from phaseshift_jax import schedules
from phaseshift_jax.diagnostics import find_phase_shift_state
from phaseshift_jax.diagnostics import leaf_paths
from phaseshift_jax.diagnostics import shifted_parameter
from phaseshift_jax.loss import phase_shift_loss
from phaseshift_jax.loss import tree_phase_shift_loss
from phaseshift_jax.phase_shift import phase_shift
from phaseshift_jax.phase_shift import PhaseShiftState
from phaseshift_jax.phase_shift import select_leaf
from phaseshift_jax.phase_shift import with_phase_shift
from phaseshift_jax.phase_shift import WithPhaseShiftState

__version__ = "0.1.0"

__all__ = (
    "PhaseShiftState",
    "WithPhaseShiftState",
    "compat",
    "find_phase_shift_state",
    "leaf_paths",
    "phase_shift",
    "phase_shift_loss",
    "schedules",
    "select_leaf",
    "shifted_parameter",
    "tree_phase_shift_loss",
    "with_phase_shift",
)
