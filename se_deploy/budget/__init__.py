"""The SE budget: what each SE block costs in latency and buys in accuracy, and the best mix of kept,
folded and removed blocks under an SE-tax budget (``se-deploy se-budget``)."""

from se_deploy.budget.run import MODEL_NAME, PLOT_NAME, BudgetConfig, run_budget
from se_deploy.budget.select import Mix, Option, achievable, choose, front
from se_deploy.budget.variants import Fate, Variants

__all__ = ["BudgetConfig", "Fate", "MODEL_NAME", "Mix", "Option", "PLOT_NAME", "Variants", "achievable", "choose",
           "front", "run_budget"]
