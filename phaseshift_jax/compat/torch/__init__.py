r"""``torch.optim`` optimizers as optax transformations that reproduce torch step for step.

Same argument names and defaults as ``torch.optim`` (torch 2.x), and torch's order of operations:
negate the gradient if ``maximize``, add the L2 term ``weight_decay * theta`` (``adamw``: shrink
the parameters by ``1 - lr * weight_decay`` instead), then the optimizer's own rule, then the
learning rate. Each optimizer is an ``optax.chain`` of optax primitives, with a custom piece only
where optax has no exact equivalent (Adagrad's ``eps`` placement, torch's AMSGrad maximum, SGD's
undamped first momentum buffer, ASGD, torch's Rprop, NAdam's momentum schedule and
``mu_product``, RAdam's ``eps`` placement and ``rho_t > 5`` threshold); the docstrings say where.

``lr`` may be a float or an optax schedule (the step count starts at 0, as after zero
``scheduler.step()`` calls in torch). This module does not import torch.

Every float hyperparameter can be injected with ``optax.inject_hyperparams`` (``betas`` as a
length-2 array, e.g. ``betas=jnp.array([0.9, 0.999])``, Rprop's ``etas`` and ``step_sizes``
likewise; a tuple stays static): the chain is the same whatever the numeric values, and a value that switches a piece off in torch (``momentum=0``,
``weight_decay=0``, ``lr_decay=0``, ``dampening=0``) makes that piece an exact identity here (for
finite parameters and gradients). The state therefore has the same structure for every value
(the optax convention: it depends on the static flags ``nesterov``, ``amsgrad``, ``centered``,
``maximize`` only), and holds a few pieces torch does not keep for a zero value; each docstring
says which. Concrete bad values raise ``ValueError`` naming the argument; traced ones are not
checked. ``update`` needs ``params`` (the weight-decay piece reads them even for a zero decay).

Optimizers: ``sgd``, ``adagrad``, ``rmsprop``, ``adam``, ``adamw``, ``asgd`` (with
``asgd_averaged_params`` to read its averaged parameters), ``adadelta``, ``adamax``, ``rprop``,
``nadam``, ``radam``. ``adam``, ``nadam`` and ``radam`` take torch's ``decoupled_weight_decay``
(a static flag, like ``maximize``; ``adamw`` is ``adam`` with it set, and has no such keyword,
as in torch).
torch's ``foreach``, ``fused``, ``capturable`` and ``differentiable`` change no numbers: where
torch has them they are accepted as keyword-only arguments that do nothing, so a torch call
ports unchanged. ``SparseAdam`` has no counterpart: JAX has no sparse gradients.

Also ``adafactor`` (torch's factored second moment and relative step), ``muon`` (torch's
bfloat16 Newton-Schulz iteration, matrices only; ``ns_kernels`` picks XLA's matmuls, the default,
or an emulation of torch's CPU kernels, bit for bit on small matrices) and ``lbfgs``, whose ``update`` is one whole
torch ``step(closure)`` (``lbfgs_step`` calls it like torch; see its docstring).

Complex parameters: torch steps a complex parameter as the pair of its real and imaginary parts
(``torch.view_as_real``), and so do ``sgd`` (its rule is linear: nothing to do), ``adagrad``,
``rmsprop``, ``asgd``, ``adadelta``, ``adamax``, ``rprop``, ``adam``, ``adamw``, ``nadam``,
``radam`` and ``lbfgs`` (through :func:`as_real_pairs`; the state of a complex leaf is complex, of
the leaf's shape, its real and imaginary parts the state of the two parts, as torch's state
tensors; ``lbfgs``'s history rings keep the real pair view). ``adafactor`` and ``muon`` refuse
complex parameters at ``init`` (``TypeError``; torch raises too).
"""

from phaseshift_jax.compat.torch._adadelta import adadelta
from phaseshift_jax.compat.torch._adagrad import adagrad
from phaseshift_jax.compat.torch._adam import adam, adamw
from phaseshift_jax.compat.torch._adamax import adamax
from phaseshift_jax.compat.torch._asgd import asgd, asgd_averaged_params
from phaseshift_jax.compat.torch._complex import as_real_pairs
from phaseshift_jax.compat.torch._nadam import nadam
from phaseshift_jax.compat.torch._radam import radam
from phaseshift_jax.compat.torch._adafactor import adafactor
from phaseshift_jax.compat.torch._lbfgs import lbfgs, lbfgs_step
from phaseshift_jax.compat.torch._muon import muon
from phaseshift_jax.compat.torch._rmsprop import rmsprop
from phaseshift_jax.compat.torch._rprop import rprop
from phaseshift_jax.compat.torch._sgd import sgd
from phaseshift_jax.compat.torch._state_dict import from_torch_state_dict, to_torch_state_dict
from phaseshift_jax.compat.torch._adagrad import scale_by_torch_adagrad
from phaseshift_jax.compat.torch._adam import scale_by_torch_amsgrad
from phaseshift_jax.compat.torch._asgd import ScaleByTorchAsgdState, scale_by_torch_asgd
from phaseshift_jax.compat.torch._nadam import ScaleByTorchNadamState, scale_by_torch_nadam
from phaseshift_jax.compat.torch._radam import scale_by_torch_radam
from phaseshift_jax.compat.torch._rprop import ScaleByTorchRpropState, scale_by_torch_rprop

__all__ = [
    "sgd",
    "adagrad",
    "rmsprop",
    "adam",
    "adamw",
    "asgd",
    "adadelta",
    "adamax",
    "rprop",
    "asgd_averaged_params",
    "as_real_pairs",
    "adafactor",
    "muon",
    "lbfgs",
    "lbfgs_step",
    "scale_by_torch_adagrad",
    "scale_by_torch_amsgrad",
    "from_torch_state_dict",
    "to_torch_state_dict",
    "scale_by_torch_asgd",
    "scale_by_torch_rprop",
    "ScaleByTorchAsgdState",
    "ScaleByTorchRpropState",
    "nadam",
    "radam",
    "scale_by_torch_nadam",
    "scale_by_torch_radam",
    "ScaleByTorchNadamState",
]
