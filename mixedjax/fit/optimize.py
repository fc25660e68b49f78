"""The optimiser: quasi-Newton iterations inside ``jit``, polished by exact Newton steps.

``minimize(fun, x0, args, free_mask, ...)`` minimises ``fun(x, args)`` (the profiled
deviance of :mod:`mixedjax.engines.onefactor`) over the coordinates where ``free_mask`` is true;
the others stay at their value in ``x0``. The whole run is one ``lax.while_loop``:

* ``method="lbfgs"``: optax's L-BFGS with its zoom (strong Wolfe) line search;
* ``method="bfgs"``: dense BFGS (inverse-Hessian update) with the same line search;
* ``method="newton"``: Newton's method with the exact autodiff Hessian (eigenvalues made
  positive, so every step descends) and a backtracking (Armijo) line search. The
  covariance parameters are few, so a Hessian costs a few gradients; this converges in a
  handful of iterations and compiles fastest.

Iterations stop when the scaled gradient ``max_j |∂f/∂x_j| / max(1, |f|)`` is at most
``gtol``, when the line search can no longer decrease ``f``, or after ``maxiter``
iterations. The covariance parameters are few, so the run ends with up to
``newton_steps`` Newton steps using the exact autodiff Hessian (each accepted only if it
lowers ``f``); this takes the optimum to machine precision, which is what lets the fit
match lme4's tightly converged numbers.

The result carries a status code (:data:`STATUS_MESSAGES`) rather than raising, so a batch
of fits under ``vmap`` can report each fit's outcome.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mixedjax.core import smallmat

STATUS_CONVERGED = 0
STATUS_MAXITER = 1
STATUS_STALLED = 2
STATUS_NONFINITE = 3

STATUS_MESSAGES = {
    STATUS_CONVERGED: "converged: scaled gradient below gtol",
    STATUS_MAXITER: "stopped at maxiter before the scaled gradient reached gtol",
    STATUS_STALLED: "the line search could not decrease the objective further before the "
    "scaled gradient reached gtol",
    STATUS_NONFINITE: "the objective or its gradient became non-finite",
}


class OptResult(NamedTuple):
    """Outcome of :func:`minimize`.

    Attributes:
        x: ``(n,)`` the minimiser.
        value: ``()`` objective at ``x``.
        grad: ``(n,)`` gradient at ``x`` (zero in fixed coordinates).
        n_iter: ``()`` quasi-Newton iterations.
        n_eval: ``()`` objective-and-gradient evaluations (line searches included).
        n_newton: ``()`` accepted Newton polishing steps.
        scaled_grad: ``()`` ``max |grad| / max(1, |value|)``.
        status: ``()`` one of the ``STATUS_*`` codes.

    Example:
        >>> import jax.numpy as jnp
        >>> res = minimize(lambda x, a: jnp.sum((x - a) ** 2), jnp.zeros(2), jnp.array([1.0, 2.0]),
        ...                jnp.array([True, True]))
        >>> res.x.round(12).tolist(), int(res.status), STATUS_MESSAGES[int(res.status)]
        ([1.0, 2.0], 0, 'converged: scaled gradient below gtol')
    """

    x: jnp.ndarray
    value: jnp.ndarray
    grad: jnp.ndarray
    n_iter: jnp.ndarray
    n_eval: jnp.ndarray
    n_newton: jnp.ndarray
    scaled_grad: jnp.ndarray
    status: jnp.ndarray


METHODS = ("lbfgs", "bfgs", "newton")


def _scaled_grad(value, grad):
    return jnp.max(jnp.abs(grad), initial=0.0) / jnp.maximum(1.0, jnp.abs(value))


def _linesearch():
    return optax.scale_by_zoom_linesearch(max_linesearch_steps=40, initial_guess_strategy="one")


def minimize(
    fun: Callable[[jnp.ndarray, Any], jnp.ndarray],
    x0: jnp.ndarray,
    args: Any,
    free_mask: jnp.ndarray,
    *,
    method: str = "lbfgs",
    maxiter: int = 500,
    gtol: float = 1e-9,
    newton_steps: int = 8,
    verbose: bool = False,
    return_hessian: bool = False,
) -> OptResult:
    """Minimise ``fun(x, args)`` over the free coordinates (pure; call it under ``jit``).

    With ``return_hessian`` (static) it returns ``(OptResult, H)``: the exact Hessian at
    ``x`` that the Newton polish computed anyway (NaN where the polish did not run), so a
    caller's curvature check costs no second Hessian graph.

    ``verbose`` (static) prints one line per iteration from inside the compiled loop
    (iteration, objective, scaled gradient; see :func:`print_trace`).

    Example:
        >>> import jax.numpy as jnp
        >>> def fun(x, target):
        ...     return jnp.sum((x - target) ** 2)
        >>> res = minimize(fun, jnp.zeros(2), jnp.array([1.0, 2.0]), jnp.array([True, False]))
        >>> res.x.tolist()   # the second coordinate is held at its start value
        [1.0, 0.0]
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    free = jnp.asarray(free_mask, dtype=bool)

    def f(x):
        return fun(jnp.where(free, x, x0), args)

    if method == "newton":
        result = _newton(f, free, x0, maxiter, gtol)
        if return_hessian:  # not kept by Newton's loop: unknown (callers check on the host)
            return result, jnp.full((x0.size, x0.size), jnp.nan, x0.dtype)
        return result

    value_and_grad = jax.value_and_grad(f)
    value0, grad0 = value_and_grad(x0)
    linesearch = _linesearch()

    if method == "lbfgs":
        opt = optax.lbfgs(memory_size=10, linesearch=linesearch)
        aux0 = opt.init(x0)
    else:
        aux0 = (jnp.eye(x0.size, dtype=x0.dtype), linesearch.init(x0))

    def step(x, aux, value, grad):
        if method == "lbfgs":
            updates, aux = opt.update(grad, aux, x, value=value, grad=grad, value_fn=f)
            ls_state = aux
        else:
            H, ls_state = aux
            direction = -jnp.where(free, H @ grad, 0.0)
            descent = direction @ grad < 0
            direction = jnp.where(descent, direction, -grad)
            H = jnp.where(descent, H, jnp.eye(x.size, dtype=x.dtype))
            updates, ls_state = linesearch.update(
                direction, ls_state, x, value=value, grad=grad, value_fn=f
            )
        new_value = optax.tree_utils.tree_get(ls_state, "value")
        new_grad = optax.tree_utils.tree_get(ls_state, "grad")
        n_ls = optax.tree_utils.tree_get(ls_state, "num_linesearch_steps")
        if method == "bfgs":
            s, y = updates, new_grad - grad
            sy = s @ y
            rho = jnp.where(sy > 1e-300, 1.0 / sy, 0.0)
            eye = jnp.eye(x.size, dtype=x.dtype)
            first = jnp.all(H == eye)
            H = jnp.where(first & (sy > 0), sy / (y @ y) * eye, H)
            V = eye - rho * jnp.outer(s, y)
            H = jnp.where(sy > 1e-300, V @ H @ V.T + rho * jnp.outer(s, s), H)
            aux = (H, ls_state)
        return x + updates, aux, new_value, new_grad, n_ls

    def cond(carry):
        x, aux, value, grad, it, n_eval, status = carry
        return (status < 0) & (it < maxiter)

    def body(carry):
        x, aux, value, grad, it, n_eval, _ = carry
        value_before = value
        new_x, aux, new_value, new_grad, n_ls = step(x, aux, value, grad)
        finite = jnp.isfinite(new_value) & jnp.all(jnp.isfinite(new_grad))
        keep = finite & (new_value <= value)
        x = jnp.where(keep, new_x, x)
        value = jnp.where(keep, new_value, value)
        grad = jnp.where(keep, new_grad, grad)
        status = jnp.where(
            _scaled_grad(value, grad) <= gtol,
            STATUS_CONVERGED,
            jnp.where(
                finite, jnp.where(new_value < value_before, -1, STATUS_STALLED), STATUS_NONFINITE
            ),
        )
        if verbose:
            jax.debug.callback(print_trace, "iter", it + 1, value, _scaled_grad(value, grad))
        return x, aux, value, grad, it + 1, n_eval + n_ls, status

    start_status = jnp.where(_scaled_grad(value0, grad0) <= gtol, STATUS_CONVERGED, -1)
    start_status = jnp.where(jnp.isfinite(value0), start_status, STATUS_NONFINITE)
    if verbose:
        jax.debug.callback(print_trace, "start", 0, value0, _scaled_grad(value0, grad0))
    carry = (x0, aux0, value0, grad0, jnp.asarray(0), jnp.asarray(1), start_status)
    x, _, value, grad, n_iter, n_eval, status = jax.lax.while_loop(cond, body, carry)
    status = jnp.where(status < 0, STATUS_MAXITER, status)

    x, value, grad, n_newton, hess, has_hess = _newton_polish(
        f, free, x, value, grad, newton_steps, verbose, gtol
    )
    scaled = _scaled_grad(value, grad)
    status = jnp.where((status != STATUS_NONFINITE) & (scaled <= gtol), STATUS_CONVERGED, status)
    status = jnp.where(jnp.isfinite(value), status, STATUS_NONFINITE)
    result = OptResult(x, value, grad, n_iter, n_eval + 2 * n_newton, n_newton, scaled, status)
    if return_hessian:
        return result, jnp.where(has_hess, hess, jnp.nan)
    return result


def print_trace(stage: str, iteration, value, scaled_grad, accepted=True) -> None:
    """Host-side printer of the optimiser trace (called through ``jax.debug.callback``).

    A Newton step that would not improve the fit is reported as rejected (polishing stops).

    Example:
        >>> print_trace("iter", 3, 1743.6282719585, 2.5e-7)
        iter      3  objective  1743.628271958500  scaled gradient 2.500e-07
    """
    print(
        f"{stage:<6}{int(iteration):>5}  objective {float(value):18.12f}  "
        f"scaled gradient {float(scaled_grad):.3e}" + ("" if accepted else "  (step rejected)"),
        flush=True,
    )


def _print_newton(started, iteration, value, scaled_grad, accepted) -> None:
    if started:  # the first pass of the polish only evaluates the Hessian
        print_trace("newton", iteration, value, scaled_grad, accepted)


def _newton_polish(f, free, x, value, grad, n_steps, verbose=False, gtol=0.0):
    """Up to ``n_steps`` exact Newton steps, each kept only if it lowers the scaled gradient
    without raising ``f`` beyond its rounding noise (1e-11 relative: near the optimum the
    true decrease is smaller than the noise of a deviance summed over many terms).

    Every pass makes one evaluation of ``(f, ∇f, ∇²f)``: the first at ``x`` itself (for its
    Hessian), the others at the Newton trial points, so the compiled loop holds a single copy
    of the Hessian's graph.
    """
    evaluate = _value_grad_hessian(f)
    free_f = free.astype(x.dtype)
    n = x.shape[0]

    def body(carry):
        x, value, grad, hess, k, accepted, done, started = carry
        step, positive = newton_step(grad, hess, free_f)
        step = jnp.where(started, step, 0.0)
        new_value, new_grad, new_hess = evaluate(x + step)
        no_worse = new_value <= value + 1e-11 * jnp.maximum(1.0, jnp.abs(value))
        ok = (
            positive
            & jnp.isfinite(new_value)
            & jnp.all(jnp.isfinite(new_grad))
            & no_worse
            & (_scaled_grad(new_value, new_grad) < _scaled_grad(value, grad))
        )
        ok = ok & started
        keep = ok | ~started  # the first pass only evaluates the Hessian at x
        x = jnp.where(ok, x + step, x)
        value = jnp.where(ok, new_value, value)
        grad = jnp.where(ok, new_grad, grad)
        hess = jnp.where(keep, new_hess, hess)
        if verbose:
            jax.debug.callback(_print_newton, started, k + 1, value, _scaled_grad(value, grad), ok)
        done = started & ~ok
        return x, value, grad, hess, k + started, accepted + ok, done, jnp.asarray(True)

    def cond(carry):  # polish to machine precision: results then do not depend on the path
        x, value, grad, hess, k, _, done, _ = carry
        return (k < n_steps) & ~done & (_scaled_grad(value, grad) > 1e-14)

    hess0 = jnp.zeros((n, n), x.dtype)
    zero = jnp.asarray(0)
    carry = (x, value, grad, hess0, zero, zero, jnp.asarray(False), jnp.asarray(False))
    x, value, grad, hess, _, accepted, _, started = jax.lax.while_loop(cond, body, carry)
    return x, value, grad, accepted, hess, started  # hess: ∇²f at x if started


def _value_grad_hessian(f):
    """``x -> (f(x), ∇f(x), ∇²f(x))``: one linearisation of ``x -> (f, ∇f)`` and its
    tangent map applied to the ``n`` unit vectors in a ``lax.map`` (the tangent graph is
    compiled once; half the compile time of ``jax.hessian`` on the deviance, same speed)."""

    def evaluate(x):
        (value, grad), tangent = jax.linearize(jax.value_and_grad(f), x)
        hess = jax.lax.map(lambda e: tangent(e)[1], jnp.eye(x.shape[0], dtype=x.dtype))
        return value, grad, 0.5 * (hess + hess.T)

    return evaluate


def newton_step(grad, hess, free_f):
    """``(-H̃⁻¹ g, positive)`` with ``H̃`` the Hessian on the free coordinates (identity on
    the fixed ones); ``positive``: whether ``H̃`` is positive definite (smallest eigenvalue
    above 1e-12 of the largest). The step is only meaningful when ``positive``.

    Example:
        >>> import jax.numpy as jnp
        >>> step, ok = newton_step(jnp.array([2.0, 1.0]), jnp.diag(jnp.array([4.0, 1.0])),
        ...                        jnp.array([1.0, 1.0]))
        >>> step.tolist(), bool(ok)
        ([-0.5, -1.0], True)
    """
    H = hess * jnp.outer(free_f, free_f) + jnp.diag(1.0 - free_f)
    eigval, eigvec = smallmat.eigh(H)
    positive = jnp.min(eigval) > 1e-12 * jnp.maximum(1.0, jnp.max(jnp.abs(eigval)))
    step = -eigvec @ ((eigvec.T @ (grad * free_f)) / jnp.where(positive, eigval, 1.0))
    return step, positive


def _newton_direction(grad, hess, free_f):
    """``-H̃⁻¹ g`` with ``H̃`` the Hessian on the free coordinates, eigenvalues ``|λ|``
    floored at 1e-10 of the largest, so the direction always descends."""
    H = hess * jnp.outer(free_f, free_f) + jnp.diag(1.0 - free_f)
    eigval, eigvec = smallmat.eigh(0.5 * (H + H.T))
    floor = 1e-10 * jnp.maximum(1.0, jnp.max(jnp.abs(eigval)))
    eigval = jnp.maximum(jnp.abs(eigval), floor)
    return -eigvec @ ((eigvec.T @ (grad * free_f)) / eigval)


def _newton(f, free, x0, maxiter, gtol) -> OptResult:
    """Damped Newton iterations with a backtracking line search (``method="newton"``)."""
    evaluate = _value_grad_hessian(f)
    free_f = free.astype(x0.dtype)

    def body(carry):
        x, value, grad, hess, it, n_eval, _ = carry
        direction = _newton_direction(grad, hess, free_f)
        slope = direction @ grad
        tolerance = 1e-13 * jnp.maximum(1.0, jnp.abs(value))

        def ls_cond(state):
            step, trial, k = state
            accept = trial <= value + jnp.minimum(1e-4 * step * slope, 0.0) + tolerance
            return ~accept & (k < 60)

        def ls_body(state):
            step, _, k = state
            step = 0.5 * step
            return step, f(x + step * direction), k + 1

        step, trial, k = jax.lax.while_loop(ls_cond, ls_body, (1.0, f(x + direction), 0))
        found = (k < 60) & jnp.isfinite(trial)
        new_x = jnp.where(found, x + step * direction, x)
        new_value, new_grad, new_hess = evaluate(new_x)
        scaled_new = _scaled_grad(new_value, new_grad)
        progress = found & ((new_value < value) | (scaled_new < _scaled_grad(value, grad)))
        status = jnp.where(
            scaled_new <= gtol,
            STATUS_CONVERGED,
            jnp.where(
                ~jnp.isfinite(new_value), STATUS_NONFINITE, jnp.where(progress, -1, STATUS_STALLED)
            ),
        )
        return new_x, new_value, new_grad, new_hess, it + 1, n_eval + k + 2, status

    def cond(carry):
        *_, it, _, status = carry
        return (status < 0) & (it < maxiter)

    value0, grad0, hess0 = evaluate(x0)
    status0 = jnp.where(_scaled_grad(value0, grad0) <= gtol, STATUS_CONVERGED, -1)
    status0 = jnp.where(jnp.isfinite(value0), status0, STATUS_NONFINITE)
    carry = (x0, value0, grad0, hess0, jnp.asarray(0), jnp.asarray(1), status0)
    x, value, grad, _, n_iter, n_eval, status = jax.lax.while_loop(cond, body, carry)
    status = jnp.where(status < 0, STATUS_MAXITER, status)
    return OptResult(x, value, grad, n_iter, n_eval, n_iter, _scaled_grad(value, grad), status)
