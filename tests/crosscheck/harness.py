"""Drive a torch optimizer and an optax transformation side by side and compare them.

Both sides start from identical parameters, see identical fixed batches and take ``steps``
optimizer steps on a small model whose gradients depend on the parameters (cross-entropy on a
small MLP or a small CNN). The JAX model is written with ``jnp``/``lax`` to mirror the torch model
operation by operation, and its parameters are a plain Python list in exactly the order of torch's
``model.parameters()``, so optimizers whose behaviour depends on leaf order (PhaseShift's
selection) see the same leaves in the same order on both sides.

Public interface (kept stable; other test modules rely on it):

* :func:`run_crosscheck` runs one comparison and returns a :class:`CrossCheckResult`.
* :func:`run_closure_crosscheck` does the same for an optimizer stepped with a closure
  (``torch.optim.LBFGS``): each step is ``optimizer.step(closure)`` on the full-batch loss in
  torch and ``jax_step(tx, state, params, value_and_grad_fn)`` in JAX.
* :func:`torch_sensitivity` measures how far torch's own run moves when its initial weights move
  by one ulp (the yardstick for a chaotic trajectory).
* :func:`torch_state` / :func:`jax_state` pull one optimizer-state quantity out of either side,
  as a list of arrays in parameter order, and :func:`max_abs_diff` compares two such lists.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from jax import lax

MODELS = ("mlp", "cnn")
# Models beside MODELS (not in the default parametrisations): "mlp_nobias" is the MLP without
# biases (every parameter a matrix, for torch.optim.Muon).
EXTRA_MODELS = ("mlp_nobias",)
ALL_MODELS = MODELS + EXTRA_MODELS
DTYPES = ("float32", "float64")

# Model and data sizes: tiny on purpose (200 steps x many optimizer cases must run in CI).
_MLP_IN, _MLP_HIDDEN, _N_CLASSES = 8, 16, 4
_CNN_CHANNELS_IN, _CNN_CHANNELS, _CNN_SIZE = 3, 4, 8
_BATCH, _N_BATCHES = 16, 4


class CrossCheckResult(NamedTuple):
  """Outcome of :func:`run_crosscheck`.

  ``max_abs_param_diff`` is the largest elementwise ``|torch - jax|`` over all parameters after
  the last step; ``torch_params`` / ``jax_params`` are the final parameters as NumPy arrays in
  torch's ``model.parameters()`` order; ``torch_records`` / ``jax_records`` hold what the optional
  record callables returned after every step.
  """

  max_abs_param_diff: float
  torch_params: list
  jax_params: list
  torch_optimizer: Any
  opt_state: Any
  torch_records: list
  jax_records: list
  steps: int


# ----------------------------------------------------------------------------- models


def _torch_model(model: str) -> torch.nn.Module:
  if model == "mlp_nobias":
    return torch.nn.Sequential(
        torch.nn.Linear(_MLP_IN, _MLP_HIDDEN, bias=False),
        torch.nn.Tanh(),
        torch.nn.Linear(_MLP_HIDDEN, _N_CLASSES, bias=False),
    )
  if model == "mlp":
    return torch.nn.Sequential(
        torch.nn.Linear(_MLP_IN, _MLP_HIDDEN),
        torch.nn.Tanh(),
        torch.nn.Linear(_MLP_HIDDEN, _N_CLASSES),
    )
  pooled = _CNN_CHANNELS * (_CNN_SIZE // 2) ** 2
  return torch.nn.Sequential(
      torch.nn.Conv2d(_CNN_CHANNELS_IN, _CNN_CHANNELS, kernel_size=3, padding=1),
      torch.nn.Tanh(),
      torch.nn.AvgPool2d(2),
      torch.nn.Flatten(),
      torch.nn.Linear(pooled, _N_CLASSES),
  )


def _jax_mlp(params, x):
  w1, b1, w2, b2 = params
  hidden = jnp.tanh(x @ w1.T + b1)
  return hidden @ w2.T + b2


def _jax_cnn(params, x):
  kernel, conv_bias, w, b = params
  y = lax.conv_general_dilated(
      x,
      kernel,
      window_strides=(1, 1),
      padding=((1, 1), (1, 1)),
      dimension_numbers=("NCHW", "OIHW", "NCHW"),
  )
  y = jnp.tanh(y + conv_bias[None, :, None, None])
  n, c, h, w_ = y.shape
  y = y.reshape(n, c, h // 2, 2, w_ // 2, 2).mean(axis=(3, 5))  # AvgPool2d(2)
  return y.reshape(n, -1) @ w.T + b  # Flatten keeps torch's (C, H, W) order


def _jax_mlp_nobias(params, x):
  w1, w2 = params
  return jnp.tanh(x @ w1.T) @ w2.T


_JAX_MODELS = {"mlp": _jax_mlp, "cnn": _jax_cnn, "mlp_nobias": _jax_mlp_nobias}


def _batches(model: str, seed: int):
  """A few fixed (inputs, labels) batches, seeded; the training loop cycles through them."""
  rng = np.random.RandomState(seed)
  shape = (_MLP_IN,) if model.startswith("mlp") else (_CNN_CHANNELS_IN, _CNN_SIZE, _CNN_SIZE)
  return [
      (
          rng.standard_normal((_BATCH, *shape)),
          rng.randint(0, _N_CLASSES, size=_BATCH).astype(np.int64),
      )
      for _ in range(_N_BATCHES)
  ]


@functools.lru_cache(maxsize=None)
def _jax_grad(model: str, dtype: str):
  """Jitted gradient of the mean cross-entropy, shared by all runs on ``model`` in ``dtype``.

  Only the optimizer step is compiled per run, which halves the compile time of a cross-check.
  """
  forward = _JAX_MODELS[model]

  def loss(params, x, y):
    logits = forward(params, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  return jax.jit(jax.grad(loss))


# ----------------------------------------------------------------------------- driver


@contextlib.contextmanager
def _single_torch_thread():
  """One torch thread: faster for these tiny models, and steady on a busy machine."""
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  try:
    yield
  finally:
    torch.set_num_threads(threads)


def run_crosscheck(
    make_torch_optimizer: Callable[[list], Any],
    tx: optax.GradientTransformation,
    *,
    model: str = "mlp",
    steps: int = 200,
    dtype: str = "float32",
    seed: int = 0,
    torch_record: Callable[[Any], Any] | None = None,
    jax_record: Callable[[Any], Any] | None = None,
) -> CrossCheckResult:
  """Train the same model with a torch optimizer and with ``tx``; compare the parameters.

  Args:
    make_torch_optimizer: called with the list of torch parameters; returns an object with
      ``.step()``. The harness computes the gradients and assigns ``p.grad`` itself each step.
    tx: the optax transformation under test. Its step (``tx.update`` with ``params`` plus
      ``optax.apply_updates``) is ``jax.jit``-compiled once per call; the gradient function
      is jitted once per (model, dtype) and reused.
    model: ``"mlp"`` (Linear 8->16, tanh, Linear 16->4) or ``"cnn"`` (Conv2d 3->4 3x3 pad 1,
      tanh, AvgPool2d(2), Linear 64->4 on 8x8 images). Loss: mean cross-entropy.
    steps: optimizer steps; batch ``t % 4`` of four fixed batches of 16 is used at step ``t``.
    dtype: ``"float32"`` or ``"float64"`` (JAX runs under ``jax.enable_x64`` for float64).
    seed: seeds torch's default parameter initialisation and the data.
    torch_record: optional ``f(torch_optimizer)``, called after every torch step.
    jax_record: optional ``f(opt_state)``, called after every JAX step.
  """
  if model not in ALL_MODELS:
    raise ValueError(f"model must be one of {ALL_MODELS}, got {model!r}")
  if dtype not in DTYPES:
    raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
  torch_dtype = getattr(torch, dtype)
  batches = _batches(model, seed)

  # --- torch side
  with _single_torch_thread():
    net, params, initial = torch_model_params(model, dtype, seed)
    optimizer = make_torch_optimizer(params)
    torch_batches = [(torch.tensor(x, dtype=torch_dtype), torch.tensor(y)) for x, y in batches]
    torch_records = []
    for t in range(steps):
      x, y = torch_batches[t % len(torch_batches)]
      loss = torch.nn.functional.cross_entropy(net(x), y)
      grads = torch.autograd.grad(loss, params)
      with torch.no_grad():
        for p, g in zip(params, grads):
          p.grad = g
      optimizer.step()
      if torch_record is not None:
        torch_records.append(torch_record(optimizer))
    torch_params = [p.detach().cpu().numpy().copy() for p in params]

  # --- JAX side
  x64 = jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()
  with x64:
    grad_fn = _jax_grad(model, dtype)

    @jax.jit
    def optimizer_step(params, opt_state, grads):
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state

    jax_params = [jnp.asarray(p, dtype=dtype) for p in initial]
    jax_batches = [(jnp.asarray(x, dtype=dtype), jnp.asarray(y, jnp.int32)) for x, y in batches]
    opt_state = tx.init(jax_params)
    jax_records = []
    for t in range(steps):
      x, y = jax_batches[t % len(jax_batches)]
      jax_params, opt_state = optimizer_step(jax_params, opt_state, grad_fn(jax_params, x, y))
      if jax_record is not None:
        jax_records.append(jax_record(opt_state))
    jax_params = [np.asarray(p) for p in jax_params]

  return CrossCheckResult(
      max_abs_param_diff=max_abs_diff(torch_params, jax_params),
      torch_params=torch_params,
      jax_params=jax_params,
      torch_optimizer=optimizer,
      opt_state=opt_state,
      torch_records=torch_records,
      jax_records=jax_records,
      steps=steps,
  )


# ----------------------------------------------------------------------------- closure mode


def _full_batch(model: str, seed: int):
  """The four fixed batches of :func:`_batches` as one batch of 64 (a deterministic loss)."""
  batches = _batches(model, seed)
  return np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])


@functools.lru_cache(maxsize=None)
def _jax_value_and_grad(model: str, dtype: str):
  forward = _JAX_MODELS[model]

  def loss(params, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(forward(params, x), y).mean()

  return jax.value_and_grad(loss)


def torch_model_params(model: str, dtype: str, seed: int, ulp_shift: bool = False):
  """torch's ``model`` in ``dtype`` from ``seed``: ``(net, params, initial)``, ``initial`` the
  parameters' values (NumPy); ``ulp_shift`` moves every weight one ulp towards +inf first."""
  torch.manual_seed(seed)
  net = _torch_model(model).to(getattr(torch, dtype))
  params = list(net.parameters())
  if ulp_shift:
    with torch.no_grad():
      for p in params:
        p.copy_(torch.nextafter(p, torch.full_like(p, float("inf"))))
  return net, params, [p.detach().cpu().numpy().copy() for p in params]


def _torch_run(make_torch_optimizer, *, model, steps, dtype, seed, closure, ulp_shift=False):
  """torch's side alone: the optimizer, its final params (NumPy) and the initial params.

  ``closure``: step with ``optimizer.step(closure)`` on the full batch, else as
  :func:`run_crosscheck` does (batch ``t % 4``, gradients assigned by hand). ``ulp_shift``: move
  every initial weight one ulp towards +inf first.
  """
  torch_dtype = getattr(torch, dtype)
  with _single_torch_thread():
    net, params, initial = torch_model_params(model, dtype, seed, ulp_shift)
    optimizer = make_torch_optimizer(params)
    if closure:
      x, y = (torch.tensor(v) for v in _full_batch(model, seed))
      x = x.to(torch_dtype)

      def loss_closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        return loss

      for _ in range(steps):
        optimizer.step(loss_closure)
    else:
      batches = [(torch.tensor(x, dtype=torch_dtype), torch.tensor(y))
                 for x, y in _batches(model, seed)]
      for t in range(steps):
        x, y = batches[t % len(batches)]
        loss = torch.nn.functional.cross_entropy(net(x), y)
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
          for p, g in zip(params, grads):
            p.grad = g
        optimizer.step()
    final = [p.detach().cpu().numpy().copy() for p in params]
  return optimizer, final, initial


def torch_sensitivity(make_torch_optimizer, *, model="mlp", steps=100, dtype="float64", seed=0,
                      closure=False, baseline=None) -> float:
  """Max abs difference between torch's run and torch's run from initial weights one ulp up.

  ``baseline``: torch's final params of the unshifted run if already known (e.g. a
  :class:`CrossCheckResult`'s ``torch_params``), which saves running it again.
  """
  if baseline is None:
    baseline = _torch_run(make_torch_optimizer, model=model, steps=steps, dtype=dtype, seed=seed,
                          closure=closure)[1]
  shifted = _torch_run(make_torch_optimizer, model=model, steps=steps, dtype=dtype, seed=seed,
                       closure=closure, ulp_shift=True)[1]
  return max_abs_diff(baseline, shifted)


def run_closure_crosscheck(
    make_torch_optimizer: Callable[[list], Any],
    tx: optax.GradientTransformation,
    jax_step: Callable,
    *,
    model: str = "mlp",
    steps: int = 100,
    dtype: str = "float64",
    seed: int = 0,
) -> CrossCheckResult:
  """Full-batch training with ``optimizer.step(closure)`` in torch and ``jax_step`` in JAX.

  The loss is the mean cross-entropy over the four batches of :func:`run_crosscheck` as one
  batch of 64. ``jax_step(tx, state, params, value_and_grad_fn)`` returns
  ``(loss, params, state)`` (e.g. ``compat.torch.lbfgs_step``); it is jitted once per call, with
  the full-batch ``value_and_grad_fn`` closed over.
  """
  if model not in ALL_MODELS:
    raise ValueError(f"model must be one of {ALL_MODELS}, got {model!r}")
  optimizer, torch_params, initial = _torch_run(
      make_torch_optimizer, model=model, steps=steps, dtype=dtype, seed=seed, closure=True)
  x64 = jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()
  with x64:
    x, y = _full_batch(model, seed)
    x, y = jnp.asarray(x, dtype=dtype), jnp.asarray(y, jnp.int32)
    value_and_grad = _jax_value_and_grad(model, dtype)
    fn = lambda params: value_and_grad(params, x, y)  # noqa: E731
    step = jax.jit(lambda state, params: jax_step(tx, state, params, fn))
    params = [jnp.asarray(p, dtype=dtype) for p in initial]
    state = tx.init(params)
    for _ in range(steps):
      _, params, state = step(state, params)
    jax_params = [np.asarray(p) for p in params]
  return CrossCheckResult(
      max_abs_param_diff=max_abs_diff(torch_params, jax_params),
      torch_params=torch_params,
      jax_params=jax_params,
      torch_optimizer=optimizer,
      opt_state=state,
      torch_records=[],
      jax_records=[],
      steps=steps,
  )


# ----------------------------------------------------------------------------- state helpers


def max_abs_diff(a: list, b: list) -> float:
  """Largest elementwise ``|a_i - b_i|`` over two equally long lists of arrays of equal shapes."""
  if len(a) != len(b):
    raise ValueError(f"lists differ in length: {len(a)} vs {len(b)}")
  diffs = []
  for u, v in zip(a, b):
    u, v = np.asarray(u), np.asarray(v)
    if u.shape != v.shape:
      raise ValueError(f"shapes differ: {u.shape} vs {v.shape}")
    diffs.append(np.max(np.abs(u.astype(np.float64) - v.astype(np.float64)), initial=0.0))
  return float(max(diffs, default=0.0))


def torch_state(torch_optimizer, key: str) -> list:
  """``torch_optimizer.state[p][key]`` for every parameter, in parameter order, as NumPy."""
  params = [p for group in torch_optimizer.param_groups for p in group["params"]]
  return [torch_optimizer.state[p][key].detach().cpu().numpy() for p in params]


def jax_state(opt_state, field: str) -> list:
  """The per-parameter list stored under the (unique) state field ``field``, as NumPy.

  Uses :func:`optax.tree_utils.tree_get`, so ``field`` is a NamedTuple field name such as
  ``"mu"`` or ``"trace"`` anywhere inside a chained state.
  """
  value = optax.tree_utils.tree_get(opt_state, field)
  if value is None:
    raise KeyError(f"no field {field!r} in the optimizer state")
  return [np.asarray(v) for v in value]


def state_diff(torch_optimizer, torch_key: str, opt_state, jax_field: str) -> float:
  """Max abs difference between torch state ``torch_key`` and optax state field ``jax_field``."""
  return max_abs_diff(torch_state(torch_optimizer, torch_key), jax_state(opt_state, jax_field))
