"""membptt: memory-efficient backpropagation through time (Gruslys et al. 2016) from Python.

    import membptt
    p = membptt.plan(1000, "5%", alpha=4)      # the best plan within 5% of plain BPTT's memory
    p.policy, p.forward_steps, p.time_ratio    # ('msm', 1950, 1.3166...)
    p.ops                                      # the schedule: numpy array of (kind, t, slot, count)
    membptt.curve(1000, alpha=4)               # cost against memory, per policy

Layout: ``_lib`` loads libmembptt.so (the C API, include/membptt/membptt.h) with ctypes;
``planner`` is the planner. Errors a user can cause are ValueError with one line naming the value.
"""
from .planner import (CURVE_DTYPE, OP_DTYPE, OP_NAMES, POLICIES, OnlineSchedule, Plan, curve, curve_budgets,
                      least_budget, online_cost, parse_budget, plan)

__version__ = "0.1.0"

__all__ = ["plan", "curve", "least_budget", "parse_budget", "curve_budgets", "Plan", "POLICIES", "OP_NAMES",
           "OP_DTYPE", "CURVE_DTYPE", "OnlineSchedule", "online_cost", "__version__"]
