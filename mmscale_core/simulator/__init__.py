"""The embedded default data: a calibrated MM-SCALE simulator with rendered images.

``simulate(out, n_images, seed, image_size)`` writes a release-format dataset plus
its latent truth; ``calibration_report(root)`` compares a dataset with the paper.
"""

from mmscale_core.simulator.calibration import calibration_report
from mmscale_core.simulator.generate import simulate, simulate_tables

__all__ = ["simulate", "simulate_tables", "calibration_report"]
