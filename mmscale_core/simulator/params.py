"""The calibrated knobs of the simulator, in one place.

Every number the calibration loop tunes lives here, so that a change in the
simulated statistics can be traced to one edit. ``DEFAULT_PARAMS`` is the set
that meets the paper's targets at the default size (see ``calibration.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from mmscale_core.simulator.lexicon import NORMBANK_THRESHOLDS

# keys below: kind in ("text", "image", "both"), label in (-1, 0, 1), sign in (-1, 1)


def _default_label_share() -> dict[str, tuple[float, float, float]]:
    # P(normbank label = -1, 0, +1 | kind) among the scenarios written
    return {"text": (0.53, 0.08, 0.39), "image": (0.35, 0.28, 0.37), "both": (0.36, 0.22, 0.42)}


def _default_reinforce() -> dict[tuple[str, int], float]:
    # P(the scene raises acceptability | kind, label); the rest lower it
    return {("image", -1): 0.95, ("image", 0): 0.25, ("image", 1): 0.05,
            ("both", -1): 0.95, ("both", 0): 0.3, ("both", 1): 0.15}


def _default_bands() -> dict[tuple[str, int], tuple[float, float]]:
    # base-acceptability band the scenario writers favour, per (kind, label)
    return {("text", -1): (1.0, 1.2), ("text", 0): (2.6, 3.4), ("text", 1): (4.75, 5.0),
            ("image", -1): (2.4, 2.6), ("image", 0): (2.6, 2.8), ("image", 1): (3.4, 3.55),
            ("both", -1): (2.2, 2.6), ("both", 0): (2.6, 2.8), ("both", 1): (3.4, 3.55)}


def _default_effect_scale() -> dict[tuple[str, int], float]:
    # multiplier of the lexicon's cue effects, per (kind, direction of the shift)
    return {("image", 1): 1.1, ("image", -1): 0.5, ("both", 1): 0.9, ("both", -1): 0.45}


@dataclass(frozen=True)
class ScenarioParams:
    """How images are drawn and which scenarios are written about them."""

    list_size_probs: tuple[float, ...] = (0.05, 0.12, 0.23, 0.30, 0.30)  # sizes 1..5, before QC
    kind_share: tuple[float, float, float] = (0.17, 0.57, 0.26)         # text, image, both
    label_share: dict = field(default_factory=_default_label_share)
    reinforce: dict = field(default_factory=_default_reinforce)
    bands: dict = field(default_factory=_default_bands)
    out_of_band_weight: float = 0.03
    effect_scale: dict = field(default_factory=_default_effect_scale)
    # power < 1 compresses the spread of a kind's effects (subtle image cues act alike)
    effect_power: dict = field(default_factory=lambda: {"image": 0.5, "both": 1.0})
    shift_jitter: float = 0.15         # lognormal spread of a scene's effect (salience of its cues)
    normbank_thresholds: tuple[float, float] = NORMBANK_THRESHOLDS  # base <= lo: -1, >= hi: +1, else 0
    min_effect: float = 0.3            # |summed cue effect| below this: the scene is irrelevant
    qc_probs: tuple[float, float, float, float] = (0.85, 0.09, 0.04, 0.02)  # ok, minor, lighting, severe


def _default_modality_clear() -> dict[str, float]:
    # share of items whose grounding is clear-cut, per latent grounding
    return {"text": 0.8, "image": 0.0, "both": 0.994}


def _default_modality_ambiguous() -> dict[str, tuple[float, float, float]]:
    # P(label = text, image, both | ambiguous item of this latent grounding)
    return {"text": (0.35, 0.57, 0.08), "image": (0.004, 0.861, 0.135), "both": (0.117, 0.294, 0.589)}


@dataclass(frozen=True)
class AnnotatorParams:
    """The crowd: bias, noise, carelessness, modality labelling, canaries."""

    judgments_per_annotator: float = 160.0   # sets the pool size
    workload_sd: float = 0.5                 # lognormal spread of how much each one annotates
    bias_sd: float = 0.25                    # per-annotator leniency (rating points)
    noise: float = 0.5                       # rating noise at the scale midpoint
    noise_spread: float = 0.2                # lognormal spread of per-annotator noise
    ambiguity: float = 0.5                   # noise shrinks by this fraction at the scale ends
    slip_rate: float = 0.05                  # share of judgments off by 2-3 points (misreads, misclicks)
    careless_share: float = 0.02             # share of annotators who are careless
    careless_rate: float = 0.6               # share of a careless annotator's answers that are random
    modality_clear: dict = field(default_factory=_default_modality_clear)
    modality_accuracy: float = 0.97          # P(label = grounding) on a clear-cut item
    modality_ambiguous: dict = field(default_factory=_default_modality_ambiguous)
    preference_max: float = 0.04             # weight of an annotator's favourite modality label
    canary_every: int = 15                   # one canary per this many judgments
    min_canaries: int = 4


@dataclass(frozen=True)
class QualityParams:
    """The paper's quality-control thresholds."""

    canary_min_pass: float = 0.8     # annotators below this canary pass rate are screened out ...
    min_canary_failures: int = 2     # ... once they have failed at least this many canaries
    variance_z: float = 6.0          # robust z of an annotator's residual variance that screens them out
    min_judgments: int = 10          # screening needs this many judgments from an annotator
    max_rating_sd: float = 1.2       # items whose rating SD exceeds this are removed


@dataclass(frozen=True)
class ExpansionParams:
    """MORALE's discrepancy-guided expansion (sec 3.2, Fig. 4): where an annotator's rating is
    within ``agree_within`` of the model's score, they may add a scenario for the same image.

    Only images of ``splits`` get added scenarios (the test split: the training data, and so
    every trained model, stays what it was). ``image_share`` is calibrated so that the
    expanded release keeps the paper's marginals (mean list size 3.48 +/- 0.05 with lists
    capped at ``max_list_size``): ``mmscale calibrate-report`` checks both versions.
    """

    image_share: float = 0.1           # P(an agreeing image with room gets added scenarios): the source
                                       # release is at 3.51 already, so the expansion has ~0.02 of headroom
    two_share: float = 0.3             # P(two added scenarios rather than one)
    agree_within: float = 1.0          # |s_user - s_model| <= this: the annotator agrees (delta = 1)
    model_noise: float = 0.8           # SD of the simulated model's score around the true acceptability
    max_list_size: int = 5             # the paper's 3-5 scenarios per image: no list grows past 5
    splits: tuple[str, ...] = ("test",)


@dataclass(frozen=True)
class SimulationParams:
    scenario: ScenarioParams = field(default_factory=ScenarioParams)
    annotators: AnnotatorParams = field(default_factory=AnnotatorParams)
    quality: QualityParams = field(default_factory=QualityParams)
    expansion: ExpansionParams = field(default_factory=ExpansionParams)

    def with_(self, **parts) -> "SimulationParams":
        return replace(self, **parts)


DEFAULT_PARAMS = SimulationParams()
