"""Moral robustness: do judgments survive perturbations that keep the moral context? (issue 20)

``perturbations`` (the seeded suite), ``scorers`` (the ``score(frame, images)``
protocol: trained runs, test-time augmentation, later prompted judges),
``measures`` (flip rates, |delta|, ranking stability, chance levels, paired
tests), ``runner`` (score originals and copies, write the files), ``report``
(what notebook 09 calls), ``cli`` (``mmscale robustness``).
"""

from mmscale_core.robustness.perturbations import Perturbation, get_perturbations, list_perturbations

__all__ = ["Perturbation", "get_perturbations", "list_perturbations"]
