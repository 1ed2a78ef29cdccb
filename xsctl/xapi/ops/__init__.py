"""Operations: each validates its input against the cache (raising a clear error
with nothing sent), returns a :class:`Plan` (the API calls and the equivalent ``xe``
command), and runs through :func:`run`. The confirm dialog and ``--dry-run`` show the
same plan."""

from xsctl.xapi.ops.base import Call, Plan, PlanFailed, Result, Undo, run

__all__ = ["Call", "Plan", "PlanFailed", "Result", "Undo", "run"]
