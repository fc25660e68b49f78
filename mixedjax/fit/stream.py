"""Many small optimisations in one compiled loop, by continuous batching of members.

Fitting ``K`` models with ``vmap`` over :func:`mixedjax.fit.optimize.minimize` runs the members'
loops in lockstep: every member pays for the iterations (and inner line-search steps) of the
slowest one, and fits that creep towards a boundary need ten times the median. Here a fixed
number ``B`` of *slots* is advanced instead. Every pass of one ``lax.while_loop`` performs
exactly **one** evaluation per slot,

.. math::
    t_s = x_s + \\alpha_s d_s, \\qquad (f(t_s), \\nabla f(t_s)[, \\nabla^2 f(t_s)]),

and then, per slot, accepts or rejects the trial point (Armijo's condition; a rejection
shrinks ``α_s`` by quadratic interpolation, clipped to ``[0.1, 0.5]``), updates the
curvature (BFGS's inverse Hessian, or the exact Hessian for Newton) and the direction
``d_s``, and decides whether the member is finished. A finished member's state is written
to the outputs and its slot is refilled with the next member of the queue (its first
evaluation is its start). The loop ends when the queue is empty and every slot is idle, so
the work is ``Σ_members evaluations / B`` passes plus one member's tail, instead of
``K × max_members(evaluations)``.

Phases bound that tail: each phase has its own number of slots and evaluation budget;
members that exhaust a phase's budget leave it unfinished (keeping their point and
curvature) and are queued for the next phase, which has fewer slots. The last phase's
budget is ``maxiter`` accepted steps.

Three step rules (``mode``):

* ``"bfgs"``: dense BFGS on the inverse Hessian ``H``; ``d = -H g``; first step (and after
  a reset) ``d = -g`` capped to a max-norm of ``max(0.5 ‖x‖_∞, 0.1)``; ``H`` rescaled by
  ``s'y / y'y`` at the first accepted step; updates skipped when ``s'y ≤ 0``.
* ``"newton"``: exact autodiff Hessian; ``d = -H̃⁻¹ g`` with ``H̃``'s eigenvalues made
  positive (:func:`mixedjax.fit.optimize._newton_direction`).
* ``"polish"``: the exact Newton polish of :func:`mixedjax.fit.optimize.minimize` (full steps
  only, accepted when ``H`` is positive definite, ``f`` is no worse than 1e-11 relative and
  the scaled gradient decreases; stops at the first rejection, at scaled gradient 1e-14, or
  after ``maxiter`` steps).

Everything is a pure function of arrays; call :func:`minimize_stream` under ``jit``.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from mixedjax.fit.optimize import (
    STATUS_CONVERGED,
    STATUS_MAXITER,
    STATUS_NONFINITE,
    STATUS_STALLED,
    _newton_direction,
    _scaled_grad,
    newton_step,
)

#: Status of a member that used up a phase's evaluation budget (queued for the next phase).
STATUS_UNFINISHED = -2
_RUNNING = -1
#: Consecutive rejected trial points after which a member is stalled (``α`` shrunk ≥ 2⁴⁰).
MAX_REJECTS = 40
#: Scaled gradient at which the Newton polish stops (as :func:`mixedjax.fit.optimize.minimize`).
POLISH_GTOL = 1e-14
#: Scaled gradient to which BFGS/Newton iterate while their steps are accepted; members
#: that stop above it (but within ``gtol``) are polished by exact Newton steps.
TIGHT_GTOL = 1e-12
MODES = ("bfgs", "newton", "polish")


class StreamState(NamedTuple):
    """Per-member optimiser state (every field has a leading axis ``K``).

    Attributes:
        x: ``(K, n)`` current point.
        value: ``(K,)`` ``f(x)``.
        grad: ``(K, n)`` ``∇f(x)`` (zero in fixed coordinates).
        curv: ``(K, n, n)`` BFGS inverse Hessian (``"bfgs"``) or exact Hessian at ``x``.
        n_iter: ``(K,)`` accepted steps so far.
        n_eval: ``(K,)`` evaluations so far.
        status: ``(K,)`` a ``STATUS_*`` code of :mod:`mixedjax.fit.optimize`, or
            :data:`STATUS_UNFINISHED`.
    """

    x: jnp.ndarray
    value: jnp.ndarray
    grad: jnp.ndarray
    curv: jnp.ndarray
    n_iter: jnp.ndarray
    n_eval: jnp.ndarray
    status: jnp.ndarray


def start_state(x0: jnp.ndarray) -> StreamState:
    """State of ``K`` members that have not been evaluated yet: ``x0 (K, n)``.

    Example:
        >>> import jax.numpy as jnp
        >>> start_state(jnp.zeros((4, 2))).curv.shape
        (4, 2, 2)
    """
    K, n = x0.shape
    eye = jnp.broadcast_to(jnp.eye(n, dtype=x0.dtype), (K, n, n))
    zeros = jnp.zeros(K, dtype=jnp.int32)
    return StreamState(
        x0, jnp.full(K, jnp.inf, x0.dtype), jnp.zeros_like(x0), eye, zeros, zeros,
        jnp.full(K, STATUS_UNFINISHED, jnp.int32),
    )  # fmt: skip


class _Slots(NamedTuple):
    member: jnp.ndarray  # (B,) member index; K marks an idle slot
    fresh: jnp.ndarray  # (B,) bool: the next evaluation is the member's (re)start
    x: jnp.ndarray  # (B, n)
    value: jnp.ndarray  # (B,)
    grad: jnp.ndarray  # (B, n)
    curv: jnp.ndarray  # (B, n, n)
    direction: jnp.ndarray  # (B, n)
    alpha: jnp.ndarray  # (B,)
    n_iter: jnp.ndarray  # (B,)
    n_eval: jnp.ndarray  # (B,)
    phase_eval: jnp.ndarray  # (B,) evaluations in this phase
    n_reject: jnp.ndarray  # (B,) consecutive rejections
    status: jnp.ndarray  # (B,)


def _evaluator(fun, mode):
    """``(x, args) -> (value, grad, hess)``; ``hess`` is ``(0, 0)``-free: BFGS returns zeros."""
    if mode == "bfgs":

        def evaluate(x, args):
            value, grad = jax.value_and_grad(fun)(x, args)
            return value, grad, jnp.zeros((x.size, x.size), x.dtype)

        return evaluate

    def grad_with_aux(x, args):
        value, grad = jax.value_and_grad(fun)(x, args)
        return grad, (value, grad)

    def evaluate(x, args):
        hess, (value, grad) = jax.jacfwd(grad_with_aux, has_aux=True)(x, args)
        return value, grad, 0.5 * (hess + hess.T)

    return evaluate


def _first_alpha(x, direction):
    """Step length capping the max-norm of a gradient step at ``max(0.5‖x‖_∞, 0.1)``."""
    cap = jnp.maximum(0.5 * jnp.max(jnp.abs(x)), 0.1)
    size = jnp.max(jnp.abs(direction))
    return jnp.minimum(1.0, cap / jnp.where(size > 0, size, 1.0))


def _direction(mode, curv, grad, free_f):
    """``(d, reset)``: the search direction and whether BFGS's ``H`` had to be reset."""
    if mode == "bfgs":
        d = -(curv @ (grad * free_f)) * free_f
        descent = d @ grad < 0
        return jnp.where(descent, d, -grad * free_f), ~descent
    if mode == "newton":
        return _newton_direction(grad, curv, free_f), jnp.asarray(False)
    d, positive = newton_step(grad, curv, free_f)
    return jnp.where(positive, d, 0.0), ~positive


def _bfgs_update(H, s, y, first):
    """Inverse-Hessian BFGS update (skipped when ``s'y ≤ 0``), rescaled at the first step."""
    n = H.shape[0]
    eye = jnp.eye(n, dtype=H.dtype)
    sy = s @ y
    ok = sy > 1e-300
    H = jnp.where(first & ok, sy / (y @ y) * eye, H)
    rho = jnp.where(ok, 1.0 / jnp.where(ok, sy, 1.0), 0.0)
    V = eye - rho * jnp.outer(s, y)
    return jnp.where(ok, V @ H @ V.T + rho * jnp.outer(s, s), H)


def _slot_step(mode, slot, trial, value, grad, hess, free_f, gtol, cap):
    """Advance one slot after its evaluation at ``trial``: accept or reject, new direction,
    new status. ``cap`` is the phase's limit (evaluations; accepted steps in the last phase
    are checked by the caller through ``n_iter``)."""
    finite = jnp.isfinite(value) & jnp.all(jnp.isfinite(grad))
    scaled_new = _scaled_grad(value, grad)
    scaled_old = _scaled_grad(slot.value, slot.grad)
    tol = jnp.maximum(1.0, jnp.abs(slot.value))
    if mode == "polish":
        good = (value <= slot.value + 1e-11 * tol) & (scaled_new < scaled_old)
    else:
        slope = slot.direction @ slot.grad
        armijo = value <= slot.value + 1e-4 * slot.alpha * slope
        noise = (value <= slot.value + 1e-12 * tol) & (scaled_new < scaled_old)
        good = armijo | noise
    accept = slot.fresh | (finite & good)
    accept = accept & (finite | ~slot.fresh)

    x = jnp.where(accept, trial, slot.x)
    new_value = jnp.where(accept, value, slot.value)
    new_grad = jnp.where(accept, grad, slot.grad)
    if mode == "bfgs":
        first = slot.n_iter == 0
        updated = _bfgs_update(slot.curv, trial - slot.x, grad - slot.grad, first)
        curv = jnp.where(slot.fresh, slot.curv, jnp.where(accept, updated, slot.curv))
    else:
        curv = jnp.where(accept, hess, slot.curv)
    stepped = accept & ~slot.fresh
    n_iter = slot.n_iter + stepped
    n_reject = jnp.where(accept, 0, slot.n_reject + 1)

    direction, reset = _direction(mode, curv, new_grad, free_f)
    if mode == "bfgs":
        restart = reset | (n_iter == 0)
        curv = jnp.where(reset, jnp.eye(curv.shape[0], dtype=curv.dtype), curv)
        alpha_new = jnp.where(restart, _first_alpha(x, direction), 1.0)
    else:
        alpha_new = jnp.asarray(1.0, x.dtype)
    if mode == "polish":
        alpha = alpha_new
    else:
        slope = slot.direction @ slot.grad
        excess = value - slot.value - slope * slot.alpha
        interp = -slope * slot.alpha / (2.0 * jnp.where(excess > 0, excess, 1.0))
        shrink = jnp.where(finite & (excess > 0), jnp.clip(interp, 0.1, 0.5), 0.1)
        alpha = jnp.where(accept, alpha_new, slot.alpha * shrink)
    direction = jnp.where(accept, direction, slot.direction)

    scaled = _scaled_grad(new_value, new_grad)
    phase_eval = slot.phase_eval + 1
    if mode == "polish":
        stop = ~accept | reset | (scaled <= POLISH_GTOL) | (n_iter >= cap)
        status = jnp.where(stop, STATUS_CONVERGED, _RUNNING)  # the caller sets the real code
    else:
        # Converged at ``TIGHT_GTOL``; or at ``gtol`` once a trial point is rejected there
        # (rounding noise), leaving the last digits to the exact Newton polish.
        settled = (scaled <= TIGHT_GTOL) | ((scaled <= gtol) & ~accept)
        status = jnp.where(
            settled,
            STATUS_CONVERGED,
            jnp.where(
                n_reject >= MAX_REJECTS,
                STATUS_STALLED,
                jnp.where(phase_eval >= cap, STATUS_UNFINISHED, _RUNNING),
            ),
        )
    status = jnp.where(slot.fresh & ~finite, STATUS_NONFINITE, status)
    return slot._replace(
        fresh=jnp.zeros_like(slot.fresh), x=x, value=new_value, grad=new_grad, curv=curv,
        direction=direction, alpha=alpha, n_iter=n_iter, n_eval=slot.n_eval + 1,
        phase_eval=phase_eval, n_reject=n_reject, status=status,
    )  # fmt: skip


def _phase(
    fun, state, queue, n_queue, args, args_axes, free_f, gtol, *, mode, slots, budget, maxiter,
    report=None,
):  # fmt: skip
    """Run the members ``queue[:n_queue]`` through ``slots`` slots until each is finished or
    has used ``budget`` evaluations in this phase; returns the updated ``state``."""
    K, n = state.x.shape
    B = slots
    dtype = state.x.dtype
    evaluate = jax.vmap(_evaluator(fun, mode), in_axes=(0, args_axes))
    step = jax.vmap(lambda s, t, v, g, h: _slot_step(mode, s, t, v, g, h, free_f, gtol, budget))

    def member_args(member):
        return take_members(args, args_axes, jnp.minimum(member, K - 1))

    def load(slots_, refill, next_, out):
        """Give each slot in ``refill`` the next queued member (or make it idle)."""
        pos = next_ + jnp.cumsum(refill) - 1
        member = jnp.where(pos < n_queue, queue[jnp.clip(pos, 0, K - 1)], K)
        member = jnp.where(refill, member, slots_.member)
        loaded = refill & (member < K)
        idx = jnp.minimum(member, K - 1)

        def pick(new, old):
            return jnp.where(loaded.reshape((B,) + (1,) * (old.ndim - 1)), new, old)

        zeros = jnp.zeros(B, jnp.int32)
        slots_ = slots_._replace(
            member=member,
            fresh=pick(jnp.ones(B, bool), slots_.fresh),
            x=pick(out.x[idx], slots_.x),
            value=pick(jnp.full(B, jnp.inf, dtype), slots_.value),
            grad=pick(jnp.zeros((B, n), dtype), slots_.grad),
            curv=pick(out.curv[idx], slots_.curv),
            n_iter=pick(out.n_iter[idx], slots_.n_iter),
            n_eval=pick(out.n_eval[idx], slots_.n_eval),
            phase_eval=pick(zeros, slots_.phase_eval),
            n_reject=pick(zeros, slots_.n_reject),
            status=pick(jnp.full(B, _RUNNING, jnp.int32), slots_.status),
        )
        return slots_, next_ + jnp.sum(refill)

    zeros = jnp.zeros(B, jnp.int32)
    empty = _Slots(
        member=jnp.full(B, K, jnp.int32), fresh=jnp.zeros(B, bool), x=jnp.zeros((B, n), dtype),
        value=jnp.zeros(B, dtype), grad=jnp.zeros((B, n), dtype),
        curv=jnp.zeros((B, n, n), dtype), direction=jnp.zeros((B, n), dtype),
        alpha=jnp.ones(B, dtype), n_iter=zeros, n_eval=zeros, phase_eval=zeros,
        n_reject=zeros, status=jnp.full(B, _RUNNING, jnp.int32),
    )  # fmt: skip
    slots0, next0 = load(empty, jnp.ones(B, bool), jnp.asarray(0, jnp.int32), state)

    def cond(carry):
        return jnp.any(carry[0].member < K)

    stride = max(1, K // 100)  # report about every percent of the members

    def body(carry):
        slots_, next_, out, n_done = carry
        alpha = slots_.alpha[:, None]
        trial = jnp.where(slots_.fresh[:, None], slots_.x, slots_.x + alpha * slots_.direction)
        value, grad, hess = evaluate(trial, member_args(slots_.member))
        slots_ = step(slots_, trial, value, grad * free_f, hess)
        if mode != "polish":
            hit_max = (slots_.n_iter >= maxiter) & (slots_.status == _RUNNING)
            slots_ = slots_._replace(status=jnp.where(hit_max, STATUS_MAXITER, slots_.status))
        finished = slots_.status != _RUNNING
        target = jnp.where(finished & (slots_.member < K), slots_.member, K)  # K: dropped
        out = StreamState(
            *[
                getattr(out, f).at[target].set(getattr(slots_, f), mode="drop")
                for f in StreamState._fields
            ]
        )
        if report is not None:  # members finished for good (not queued for a later phase)
            final = (target < K) & (slots_.status != STATUS_UNFINISHED)
            newly = jnp.sum(final, dtype=jnp.int32)
            crossed = (n_done + newly) // stride > n_done // stride
            jax.lax.cond(crossed, lambda n: jax.debug.callback(report, n), lambda n: None,
                         n_done + newly)  # fmt: skip
            n_done = n_done + newly
        slots_, next_ = load(slots_, finished | (slots_.member >= K), next_, out)
        return slots_, next_, out, n_done

    start = (slots0, next0, state, jnp.sum(state.status >= 0).astype(jnp.int32))
    _, _, out, _ = jax.lax.while_loop(cond, body, start)
    return out


def take_members(args: Any, axes: Any, idx: jnp.ndarray) -> Any:
    """Members ``idx`` of a pytree whose leaves with axis 0 in ``axes`` (a prefix of
    ``args``, ``None`` for shared leaves) are batched along their first axis.

    Example:
        >>> import jax.numpy as jnp
        >>> take_members((jnp.arange(6).reshape(3, 2), jnp.ones(2)), (0, None),
        ...              jnp.array([2, 0]))[0].tolist()
        [[4, 5], [0, 1]]
    """
    return jax.tree_util.tree_map(
        lambda ax, sub: sub if ax is None else jax.tree_util.tree_map(lambda a: a[idx], sub),
        axes, args, is_leaf=lambda a: a is None,
    )  # fmt: skip


def pending(state: StreamState) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(queue (K,), count)``: members whose status is :data:`STATUS_UNFINISHED`, first."""
    K = state.status.shape[0]
    todo = state.status == STATUS_UNFINISHED
    (queue,) = jnp.nonzero(todo, size=K, fill_value=K)
    return queue.astype(jnp.int32), jnp.sum(todo).astype(jnp.int32)


def minimize_stream(
    fun: Callable[[jnp.ndarray, Any], jnp.ndarray],
    x0: jnp.ndarray,
    args: Any,
    args_axes: Any,
    free_mask: jnp.ndarray,
    *,
    mode: str = "bfgs",
    phases: tuple[tuple[int, int | None], ...] = ((256, 60), (16, None)),
    maxiter: int = 500,
    gtol: float = 1e-9,
    polish_slots: int = 128,
    polish_steps: int = 8,
    report: Callable[[jnp.ndarray], None] | None = None,
) -> tuple[StreamState, jnp.ndarray]:
    """Minimise ``fun(x, args_k)`` for ``K`` members from ``x0 (K, n)``, then polish.

    Args:
        fun: scalar objective of one member, ``fun(x (n,), member_args)``.
        args: pytree of member data; leaves with ``args_axes`` 0 have a leading axis ``K``,
            leaves with ``None`` are shared.
        free_mask: ``(n,)`` coordinates to optimise (shared); the others stay at ``x0``.
        mode: ``"bfgs"`` or ``"newton"`` (see the module docstring).
        phases: ``(slots, evaluation budget)`` per phase; ``None``: no budget (last phase).
        polish_slots / polish_steps: slots and maximum steps of the exact Newton polish.
        report: host function called (through ``jax.debug.callback``) with the number of
            members whose optimisation has finished, about every percent of ``K``.

    Returns:
        ``(state, n_newton)``: the final :class:`StreamState` (``status`` a
        ``STATUS_*`` code; converged means scaled gradient ≤ ``gtol`` after the polish) and
        ``(K,)`` accepted polishing steps.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> fun = lambda x, a: jnp.sum((x - a) ** 2) + (x[0] * x[1]) ** 2
        >>> targets = jnp.array([[1.0, 2.0], [0.5, -1.0], [3.0, 0.0]])
        >>> state, _ = minimize_stream(fun, jnp.zeros((3, 2)), targets, 0,
        ...                            jnp.array([True, True]), phases=((2, 30), (2, None)),
        ...                            polish_slots=2)
        >>> state.status.tolist()
        [0, 0, 0]
    """
    if mode not in ("bfgs", "newton"):
        raise ValueError(f"mode must be 'bfgs' or 'newton', got {mode!r}")
    if not phases or phases[-1][1] is not None:
        raise ValueError("phases must end with a phase without a budget: (slots, None)")
    K, n = x0.shape
    free = jnp.asarray(free_mask, dtype=bool)
    free_f = free.astype(x0.dtype)
    x_fixed = x0

    def f(x, member):
        args_k, fixed = member
        return fun(jnp.where(free, x, fixed), args_k)

    all_args = (args, x_fixed)
    all_axes = (args_axes, 0)
    state = start_state(x0)
    for slots, budget in phases:
        queue, n_queue = pending(state)
        state = _phase(
            f, state, queue, n_queue, all_args, all_axes, free_f, gtol, mode=mode,
            slots=min(slots, K), budget=budget if budget is not None else 2**30,
            maxiter=maxiter, report=report,
        )  # fmt: skip
    state = state._replace(status=jnp.where(state.status == STATUS_UNFINISHED, STATUS_MAXITER,
                                            state.status))  # fmt: skip
    scaled = jax.vmap(_scaled_grad)(state.value, state.grad)
    rough = (scaled > TIGHT_GTOL) & (state.status != STATUS_NONFINITE)
    (queue,) = jnp.nonzero(rough, size=K, fill_value=K)
    zeros = jnp.zeros(K, jnp.int32)
    polish_start = StreamState(
        state.x, state.value, state.grad, jnp.zeros_like(state.curv), zeros, zeros,
        jnp.full(K, STATUS_UNFINISHED, jnp.int32),
    )  # fmt: skip
    polished = _phase(
        f, polish_start, queue.astype(jnp.int32), jnp.sum(rough).astype(jnp.int32), all_args,
        all_axes, free_f, gtol, mode="polish", slots=min(polish_slots, K), budget=polish_steps,
        maxiter=polish_steps,
    )  # fmt: skip
    scaled = jax.vmap(_scaled_grad)(polished.value, polished.grad)
    status = jnp.where((state.status != STATUS_NONFINITE) & (scaled <= gtol), STATUS_CONVERGED,
                       state.status)  # fmt: skip
    status = jnp.where(jnp.isfinite(polished.value), status, STATUS_NONFINITE)
    final = state._replace(
        x=polished.x, value=polished.value, grad=polished.grad, status=status,
        n_eval=state.n_eval + polished.n_eval,
    )  # fmt: skip
    return final, polished.n_iter
