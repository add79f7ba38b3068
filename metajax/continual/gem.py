"""Gradient episodic memory, GEM (Lopez-Paz & Ranzato 2017, "Gradient Episodic Memory for Continual
Learning", https://arxiv.org/abs/1706.08840).

An episodic memory keeps examples of each past experience k, and each step
computes the gradient g_k of the loss on each one's examples. When the
batch's gradient g conflicts with one of them (g . g_k < 0), g is replaced
by the closest gradient that does not raise any past experience's loss to
first order, through the dual of that quadratic program (G: the g_k as rows):

    min_v 1/2 v^T (G G^T + eps I) v + (G g)^T v   s.t.  v >= margin,    g~ = G^T v + g

as the paper's code solves it (``eps = 1e-3``; ``margin``, its
``memory_strength``, makes each constraint a little stronger). The program
has one variable per past experience, so it is solved exactly inside the
step by an active-set method (``nonnegative_quadratic_program``).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from metajax.array_checks import check_array, is_traced
from metajax.continual.base import ContinualBatch, Strategy, StrategyContext
from metajax.continual.replay import buffered_example, offered_examples
from metajax.continual.replay_buffer import BufferedExample
from metajax.options import option
from metajax.registry import CONTINUAL_STRATEGIES

GEM_EPS = 1e-3  # The paper's code's ridge on G G^T, which keeps the program strictly convex.


class GEMState(NamedTuple):
    """The episodic memory: ``memory`` (each leaf ``[experiences, per_experience, ...]``, row k the
    examples of one past experience), ``weight [experiences, per_experience]`` (0 on empty slots) and
    ``stored``, the experiences stored so far (the next one goes to row ``stored % experiences``)."""

    memory: BufferedExample
    weight: jax.Array
    stored: jax.Array


def nonnegative_quadratic_program(
    matrix: jax.Array, linear: jax.Array, *, max_iterations: int | None = None
) -> jax.Array:
    """``argmin_{u >= 0} 1/2 u^T matrix u + linear^T u`` for a symmetric positive definite ``matrix [k, k]``.

    Lawson and Hanson's active-set method (as in their NNLS), one ``lax.while_loop``: grow the set of
    free variables by the one whose negative gradient is largest, solve the equality-constrained
    problem on it, and step back to the boundary when that solution leaves the feasible set. Exact
    after finitely many steps; ``max_iterations`` (default ``10 k + 10``) bounds the loop against
    cycling on rounding.
    """
    k, _ = check_array("matrix", matrix, (None, None), "[k, k]", dtype="floating")
    check_array("matrix", matrix, (k, k), "[k, k]")
    check_array("linear", linear, (k,), "[k]", dtype="floating")
    max_iterations = 10 * k + 10 if max_iterations is None else max_iterations
    tolerance = 1e-6 * jnp.maximum(jnp.max(jnp.abs(linear)), 1e-30)
    indices = jnp.arange(k)

    def solve_on(free):
        """The unconstrained minimizer over the free variables, the others held at 0."""
        system = jnp.where(free[:, None] & free[None, :], matrix, jnp.eye(k, dtype=matrix.dtype))
        return jnp.where(free, jnp.linalg.solve(system, jnp.where(free, -linear, 0.0)), 0.0)

    def body(carry):
        u, free, _, iteration = carry
        s = solve_on(free)
        feasible = jnp.all(jnp.where(free, s > 0, True))
        # Feasible: take s, and free the bound variable whose negative gradient is largest, if positive.
        descent = jnp.where(free, -jnp.inf, -(matrix @ s + linear))
        entering = jnp.argmax(descent)
        grows = descent[entering] > tolerance
        grown = free | ((indices == entering) & grows)
        # Infeasible: move from u towards s until the first free variable reaches 0, and bind it.
        leaving = free & (s <= 0)
        ratios = jnp.where(leaving, u / jnp.maximum(u - s, jnp.finfo(u.dtype).tiny), jnp.inf)
        blocking = jnp.argmin(ratios)
        stepped = u + ratios[blocking] * (s - u)
        shrunk = free & (stepped > 0) & (indices != blocking)
        u = jnp.where(feasible, s, jnp.where(shrunk, stepped, 0.0))
        free = jnp.where(feasible, grown, shrunk)
        return u, free, feasible & ~grows, iteration + 1

    def running(carry):
        _, _, done, iteration = carry
        return ~done & (iteration < max_iterations)

    start = (jnp.zeros_like(linear), jnp.zeros((k,), bool), jnp.zeros((), bool), jnp.zeros((), jnp.int32))
    u, *_ = jax.lax.while_loop(running, body, start)
    return u


def project_to_cone(gradient: jax.Array, references: jax.Array, valid: jax.Array, margin) -> jax.Array:
    """GEM's projection of a flat ``gradient [p]`` given ``references [k, p]`` (rows where ``valid [k]``):
    ``gradient`` itself when no valid reference has a negative dot product with it, else
    ``references^T v + gradient`` with ``v`` the solution of the dual program (see the module)."""
    check_array("gradient", gradient, (None,), "[p]", dtype="floating")
    k, _ = check_array("references", references, (None, gradient.shape[0]), "[k, p]")
    check_array("valid", valid, (k,), "[k]", dtype="bool")
    return _projected(gradient, references, valid, margin, references @ references.T, references @ gradient)


def _projected(gradient, references, valid, margin, gram, dots):
    """``project_to_cone`` given the references' Gram matrix and their dot products with the gradient
    (computed leaf by leaf for a pytree of parameters); ``references`` may be any pytree with a leading
    ``k`` axis, ``gradient`` one without."""
    both = valid[:, None] & valid[None, :]
    k = valid.shape[0]
    gram = jnp.where(both, gram, 0.0) + GEM_EPS * jnp.eye(k, dtype=gram.dtype)
    dots = jnp.where(valid, dots, 0.0)
    # v = margin + u with u >= 0: the program in u has the linear term G g + margin * (G G^T + eps I) 1.
    u = nonnegative_quadratic_program(gram, dots + margin * jnp.sum(gram, axis=1))
    v = jnp.where(valid, margin + u, 0.0)
    conflict = jnp.any(valid & (dots < 0))
    return jax.tree.map(lambda g, r: jnp.where(conflict, g + jnp.tensordot(v, r, axes=1), g), gradient, references)


def gem(
    memory_per_experience: int,
    *,
    example_shape: tuple[int, ...],
    num_outputs: int,
    memory_experiences: int = 10,
    margin: float = 0.5,
) -> Strategy:
    """GEM as a strategy: at the end of each experience, ``memory_per_experience`` of its examples drawn at
    random (all, where it has fewer) are stored in the memory's next row; each step projects the
    gradient against the reference gradients of the stored rows (every experience seen, up to the latest
    ``memory_experiences``: the memory is a ring of that many rows, and each costs a gradient per step).
    """
    if memory_per_experience < 1 or memory_experiences < 1:
        raise ValueError(
            f"GEM's memory must have positive sizes, got {memory_per_experience} examples per experience and "
            f"{memory_experiences} experiences"
        )
    if not is_traced(margin) and margin < 0:
        raise ValueError(f"GEM's margin must be >= 0, got {margin}")
    m, rows = memory_per_experience, memory_experiences

    def init(params):
        example = buffered_example(example_shape, num_outputs)
        return GEMState(
            memory=jax.tree.map(lambda leaf: jnp.zeros((rows, m, *leaf.shape), leaf.dtype), example),
            weight=jnp.zeros((rows, m)),
            stored=jnp.zeros((), jnp.int32),
        )

    def after_experience(state: GEMState, params, experience, key):
        n = experience.x.shape[0]
        order = jax.random.permutation(key, n)
        chosen = order[jnp.arange(m) % n]  # Repeats, weighted 0, where the experience has fewer than m.
        weight = (jnp.arange(m) < n).astype(jnp.float32)
        if experience.weight is not None:
            weight = weight * experience.weight[chosen]
        examples = jax.tree.map(lambda leaf: leaf[chosen], offered_examples(experience))
        row = state.stored % rows
        memory = jax.tree.map(lambda old, new: old.at[row].set(new.astype(old.dtype)), state.memory, examples)
        return GEMState(memory, state.weight.at[row].set(weight), state.stored + 1)

    def project(grads, params, state: GEMState, key, data_loss):
        def reference(examples, weight):
            return jax.grad(data_loss)(params, ContinualBatch(examples.x, examples.y, examples.logit_mask, weight))

        references = jax.vmap(reference)(state.memory, state.weight)  # Each leaf [rows, *param_shape].
        leaves = zip(jax.tree.leaves(references), jax.tree.leaves(grads), strict=True)
        flat = [(r.reshape(rows, -1), g.reshape(-1)) for r, g in leaves]
        gram = sum(r @ r.T for r, _ in flat)
        dots = sum(r @ g for r, g in flat)
        valid = jnp.sum(state.weight, axis=1) > 0
        return _projected(grads, references, valid, margin, gram, dots)

    return Strategy(init=init, after_experience=after_experience, project=project)


@dataclasses.dataclass(frozen=True)
class GEMOptions:
    """The paper's MNIST settings: 256 memories per experience, memory strength 0.5."""

    gem_memory: int = option(256, "examples of each experience kept in GEM's episodic memory", minimum=1)
    gem_experiences: int = option(
        10, "past experiences GEM keeps memories of (the latest ones); each costs a gradient per step", minimum=1
    )
    gem_margin: float = option(0.5, "GEM's memory strength: the margin added to each constraint", minimum=0)


@CONTINUAL_STRATEGIES.register(
    "gem",
    hyperparams=GEMOptions,
    description="GEM (Lopez-Paz & Ranzato 2017): project the gradient so that no past experience's loss rises.",
)
def build_gem(options: GEMOptions, context: StrategyContext) -> Strategy:
    return gem(
        options.gem_memory,
        example_shape=context.example_shape,
        num_outputs=context.num_outputs,
        memory_experiences=options.gem_experiences,
        margin=options.gem_margin,
    )
