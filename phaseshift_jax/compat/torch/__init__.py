r"""``torch.optim`` optimizers as optax transformations that reproduce torch step for step.

Same argument names and defaults as ``torch.optim`` (torch 2.x), and torch's order of operations:
negate the gradient if ``maximize``, add the L2 term ``weight_decay * theta`` (``adamw``: shrink
the parameters by ``1 - lr * weight_decay`` instead), then the optimizer's own rule, then the
learning rate. Each optimizer is an ``optax.chain`` of optax primitives, with a custom piece only
where optax has no exact equivalent (Adagrad's ``eps`` placement, torch's AMSGrad maximum, SGD's
undamped first momentum buffer); the docstrings say where.

``lr`` may be a float or an optax schedule (the step count starts at 0, as after zero
``scheduler.step()`` calls in torch). This module does not import torch.

Every float hyperparameter can be injected with ``optax.inject_hyperparams`` (``betas`` as a
length-2 array, e.g. ``betas=jnp.array([0.9, 0.999])``; a tuple stays static): the chain is the
same whatever the numeric values, and a value that switches a piece off in torch (``momentum=0``,
``weight_decay=0``, ``lr_decay=0``, ``dampening=0``) makes that piece an exact identity here (for
finite parameters and gradients). The state therefore has the same structure for every value
(the optax convention: it depends on the static flags ``nesterov``, ``amsgrad``, ``centered``,
``maximize`` only), and holds a few pieces torch does not keep for a zero value; each docstring
says which. Concrete bad values raise ``ValueError`` naming the argument; traced ones are not
checked. ``update`` needs ``params`` (the weight-decay piece reads them even for a zero decay).

Complex parameters: ``sgd`` steps them as torch does (its rule is linear, so a complex parameter
steps as the pair of its real and imaginary parts); ``adagrad``, ``rmsprop``, ``adam`` and ``adamw``
refuse them at ``init`` with a ``TypeError``, since torch squares the two parts separately where
optax's accumulators and moments would not (``_common.real_only``).
"""

from phaseshift_jax.compat.torch._adagrad import adagrad
from phaseshift_jax.compat.torch._adam import adam, adamw
from phaseshift_jax.compat.torch._rmsprop import rmsprop
from phaseshift_jax.compat.torch._sgd import sgd
from phaseshift_jax.compat.torch._state_dict import from_torch_state_dict, to_torch_state_dict
from phaseshift_jax.compat.torch._transforms import scale_by_torch_adagrad, scale_by_torch_amsgrad

__all__ = [
    "sgd",
    "adagrad",
    "rmsprop",
    "adam",
    "adamw",
    "scale_by_torch_adagrad",
    "scale_by_torch_amsgrad",
    "from_torch_state_dict",
    "to_torch_state_dict",
]
