"""The curated lexicon behind the simulated scenarios and scenes (written for this project).

Three kinds of everyday actions, following the paper's grounding definitions:

* ``text``: the wording settles the judgment (flagrant wrongs, clear virtues,
  everyday neutral acts); the scene never moves it.
* ``image``: the wording is underspecified ("walking past without stopping",
  "bringing a flashlight") and the scene supplies the morally relevant facts.
* ``both``: specific wording whose acceptability turns on the scene ("giving a
  stranger a ride" with a child present, at night, beside a fire).

A scenario sentence is composed from an action, an optional target, an optional
negation, at most one of the action's own modifiers (intent, qualifier) and at
most one situational detail ("after a long day"). Its *base acceptability*
(1-5, what a reader of the sentence alone would judge) is a pure function of the
sentence: ``base + target`` (mirrored as ``6 - x`` under negation) plus the
modifier's delta, so a text model has to read the whole sentence to recover it.

Each action carries signed effects of visual cues (night, child, elderly, crowd,
traffic, fire, water); the image shift of a scenario is the sum of the effects of
the cues its image shows (negated under negation). A *target setting* fixes the
place and some cues of an image; the other cues are drawn per image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

CUES: tuple[str, ...] = ("night", "child", "elderly", "crowd", "traffic", "fire", "water")
PLACES: tuple[str, ...] = ("kitchen", "street", "classroom", "park", "living_room", "office", "store")
KINDS: tuple[str, ...] = ("text", "image", "both")
OUTDOOR_PLACES = frozenset({"street", "park"})

# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Setting:
    """A target setting: its text, its place and the cues it always shows."""

    text: str
    place: str
    cues: frozenset[str] = frozenset()


def _s(text: str, place: str, *cues: str) -> Setting:
    return Setting(text, place, frozenset(cues))


SETTINGS: tuple[Setting, ...] = (
    _s("a family cooking dinner in a kitchen", "kitchen"),
    _s("a child helping out in the kitchen", "kitchen", "child"),
    _s("an elderly man making tea in his kitchen", "kitchen", "elderly"),
    _s("friends crowded into a kitchen at a party", "kitchen", "crowd"),
    _s("a pan left on a hot stove", "kitchen", "fire"),
    _s("a child crossing a street", "street", "child", "traffic"),
    _s("an elderly woman waiting at a crosswalk", "street", "elderly", "traffic"),
    _s("people walking home along a city street", "street", "crowd"),
    _s("a stranger standing by the roadside", "street", "traffic"),
    _s("a street flooded after heavy rain", "street", "water"),
    _s("students in a classroom during a test", "classroom", "crowd"),
    _s("a teacher talking with a pupil after class", "classroom", "child"),
    _s("an empty classroom after school", "classroom"),
    _s("a science lab with a burner lit", "classroom", "fire"),
    _s("children playing near a pond", "park", "child", "water"),
    _s("an elderly man feeding birds in a park", "park", "elderly"),
    _s("a crowd gathered for a concert in the park", "park", "crowd"),
    _s("a campfire in a park", "park", "fire"),
    _s("a park path running beside a road", "park", "traffic"),
    _s("a family watching TV in the living room", "living_room"),
    _s("a babysitter with a toddler in a living room", "living_room", "child"),
    _s("a grandmother resting in her armchair", "living_room", "elderly"),
    _s("candles burning in a living room", "living_room", "fire"),
    _s("a house party in a living room", "living_room", "crowd"),
    _s("coworkers in a late meeting at the office", "office", "crowd"),
    _s("an employee alone at a desk", "office"),
    _s("a parent who brought a child to the office", "office", "child"),
    _s("an older colleague struggling with a computer", "office", "elderly"),
    _s("shoppers in a busy grocery store", "store", "crowd"),
    _s("a child lost in a store aisle", "store", "child"),
    _s("an elderly shopper reaching for a high shelf", "store", "elderly"),
    _s("a cashier closing up the store", "store"),
    _s("a spill spreading across a store aisle", "store", "water"),
)

# Probability that a cue the setting does not name appears in its image anyway.
OPTIONAL_CUE_PROBS: dict[str, dict[str, float]] = {
    "night": {p: 0.35 for p in PLACES},
    "child": {p: 0.22 for p in PLACES},
    "elderly": {p: 0.2 for p in PLACES},
    "crowd": {p: 0.2 for p in PLACES},
    "traffic": {"street": 0.55, "park": 0.25, "store": 0.08},
    "fire": {"kitchen": 0.3, "living_room": 0.2, "park": 0.15, "classroom": 0.08, "office": 0.05, "street": 0.08},
    "water": {"park": 0.3, "street": 0.18, "kitchen": 0.12, "store": 0.1, "living_room": 0.06,
              "classroom": 0.05, "office": 0.05},
}


# --------------------------------------------------------------------------- modifiers


@dataclass(frozen=True)
class Modifier:
    """A trailing intent or qualifier and how it moves acceptability."""

    text: str
    delta: float


MODIFIERS: dict[str, tuple[Modifier, ...]] = {
    # asking permission
    "ask": (Modifier("without asking", -0.7), Modifier("after asking first", 0.4),
            Modifier("after being told not to", -0.9)),
    # motives
    "motive": (Modifier("to help out", 0.5), Modifier("to get back at them", -1.0),
               Modifier("just for fun", -0.3), Modifier("to impress your friends", -0.4),
               Modifier("because you were in a hurry", -0.3), Modifier("to be polite", 0.3)),
    # repetition
    "time": (Modifier("again", -0.1), Modifier("for the third time this week", -0.4),
             Modifier("every single day", -0.2)),
    # duration
    "duration": (Modifier("for a few minutes", 0.1), Modifier("for hours", -0.3)),
    # errands that explain stepping away
    "errand": (Modifier("to grab the mail", 0.2), Modifier("to take a phone call", 0.0),
               Modifier("to have a smoke", -0.4), Modifier("to answer the door", 0.1)),
    # who sees it
    "audience": (Modifier("in front of everyone", -0.2), Modifier("when no one is watching", -0.3),
                 Modifier("while others look on", 0.0)),
    # mild wording that changes the sentence, barely the judgment
    "soft": (Modifier("for a moment", 0.05), Modifier("right away", 0.1),
             Modifier("without a word", -0.15), Modifier("quietly", 0.0)),
    # where and when: situational detail that changes the sentence, barely the judgment
    "scene": (Modifier("after a long day", 0.0), Modifier("on the way home", 0.0),
              Modifier("without thinking twice", -0.05), Modifier("just this once", 0.05),
              Modifier("as usual", 0.0), Modifier("while on the phone", -0.1),
              Modifier("with a smile", 0.05), Modifier("before anyone else does", 0.0)),
    # good deeds done readily
    "readily": (Modifier("right away", 0.05), Modifier("without being asked", 0.1),
                Modifier("quietly", 0.0), Modifier("in person", 0.05)),
}
NEGATION_GROUPS = frozenset({"time", "duration", "scene"})
UNIVERSAL_GROUPS = ("scene",)  # fits any gerund phrase, so every action takes it


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class Action:
    """One curated action (gerund phrase, may hold ``{target}``) and how scenes bear on it."""

    phrase: str
    base: float
    kind: str
    effects: dict[str, float] = field(default_factory=dict)
    targets: tuple[tuple[str, float], ...] = ()
    negated: str | None = None
    mods: tuple[str, ...] = ()
    places: tuple[str, ...] = PLACES

    def __hash__(self) -> int:  # dict field: hash by identity of the phrase
        return hash(self.phrase)


def _a(phrase: str, base: float, kind: str, effects: dict[str, float] | None = None, *,
       targets=(), negated=None, mods=(), places=PLACES) -> Action:
    return Action(phrase, base, kind, dict(effects or {}), tuple(targets), negated, tuple(mods), tuple(places))


FRIENDS = (("a friend", 0.0), ("your roommate", 0.0), ("a coworker", 0.1), ("your sister", -0.05))
PEOPLE = (("a neighbor", 0.0), ("your brother", 0.0), ("a classmate", 0.0), ("your partner", -0.05))
INDOOR = ("kitchen", "classroom", "living_room", "office", "store")
HOME = ("kitchen", "living_room")
# who "them" is stays vague in image-grounded wording: the image says who it is
THEM = (("them", 0.0), ("the people there", 0.0), ("the person nearby", 0.0), ("everyone around", 0.0))

ACTIONS: tuple[Action, ...] = (
    # ---- text-grounded: the sentence settles it --------------------------------------------
    _a("stealing money from {target}'s wallet", 1.15, "text", targets=FRIENDS, mods=("motive", "audience")),
    _a("hitting {target} during an argument", 1.05, "text", targets=PEOPLE, mods=("time", "audience")),
    _a("spreading a cruel rumor about {target}", 1.15, "text", targets=PEOPLE, mods=("motive",)),
    _a("cheating on your partner", 1.05, "text", mods=("time",)),
    _a("reading {target}'s private messages", 1.4, "text", targets=FRIENDS, mods=("ask", "motive")),
    _a("taking credit for {target}'s work", 1.25, "text", targets=FRIENDS, mods=("motive", "audience")),
    _a("mocking {target}'s accent", 1.15, "text", targets=PEOPLE, mods=("audience", "motive")),
    _a("keeping a lost wallet you found", 1.3, "text", mods=("motive",)),
    _a("blaming {target} for your own mistake", 1.2, "text", targets=FRIENDS, mods=("audience",)),
    _a("kicking a stray dog", 1.0, "text", mods=("motive",)),
    _a("insulting the cashier", 1.2, "text", mods=("audience", "time"), places=("store",)),
    _a("shoplifting a candy bar", 1.35, "text", mods=("motive", "audience"), places=("store",)),
    _a("cheating on the exam", 1.25, "text", mods=("audience", "motive"), places=("classroom",)),
    _a("copying a classmate's homework", 1.45, "text", mods=("ask", "time"), places=("classroom",)),
    _a("lying to your boss about being sick", 1.5, "text", mods=("time",), places=("office",)),
    _a("faking the numbers in a report", 1.1, "text", mods=("motive",), places=("office",)),
    _a("throwing your trash on the ground", 1.4, "text", mods=("audience", "time"), places=("street", "park")),
    _a("breaking a promise to {target}", 1.9, "text", targets=FRIENDS, mods=("time",)),
    _a("forgetting {target}'s birthday", 2.2, "text", targets=FRIENDS, mods=("time",)),
    _a("returning a lost wallet to its owner", 4.9, "text", mods=("readily",),
       negated="keeping a lost wallet instead of returning it"),
    _a("thanking {target} for their help", 4.8, "text", targets=PEOPLE, mods=("audience", "readily")),
    _a("apologizing to {target} after an argument", 4.65, "text", targets=FRIENDS, mods=("audience", "readily")),
    _a("keeping a promise to {target}", 4.7, "text", targets=FRIENDS, mods=("readily",),
       negated="breaking a promise you made to {target}"),
    _a("donating old clothes to a shelter", 4.7, "text", mods=("readily", "audience")),
    _a("telling the truth about breaking the vase", 4.6, "text", mods=("readily",), places=HOME,
       negated="hiding that you broke the vase"),
    _a("comforting {target} after bad news", 4.85, "text", targets=PEOPLE, mods=("readily",)),
    _a("standing up for {target} when they are bullied", 4.8, "text", targets=PEOPLE, mods=("audience",)),
    _a("paying back money you borrowed from {target}", 4.75, "text", targets=FRIENDS, mods=("readily",),
       negated="never paying back money you borrowed from {target}"),
    _a("holding the door for the person behind you", 4.6, "text", mods=("readily",), places=INDOOR),
    _a("sharing your notes with {target}", 4.55, "text", targets=(("a classmate", 0.0), ("a sick classmate", 0.2)),
       mods=("readily", "ask"), places=("classroom",)),
    _a("helping a new coworker learn the ropes", 4.65, "text", mods=("readily", "time"), places=("office",)),
    _a("skipping breakfast", 3.0, "text", mods=("time",)),
    _a("changing your mind about dinner plans", 2.9, "text", mods=("time",), places=HOME),
    _a("ordering pizza instead of cooking", 3.1, "text", mods=("time",), places=HOME),
    _a("turning down an invitation from {target}", 2.85, "text", targets=FRIENDS, mods=("soft",)),
    _a("wearing mismatched socks", 3.2, "text", mods=("time",)),
    _a("buying a second coffee", 3.05, "text", mods=("time",), places=("store", "office", "street")),
    _a("rearranging the furniture", 3.15, "text", mods=("ask",), places=HOME),

    # ---- image-grounded: underspecified, the scene decides ----------------------------------
    _a("taking a photo of {target}", 2.7, "image",
       {"child": -0.9, "fire": -1.1, "crowd": 0.5, "elderly": -0.4, "water": -0.4},
       targets=THEM, mods=("ask", "soft")),
    _a("walking past {target} without stopping", 2.7, "image",
       {"elderly": -0.9, "child": -0.8, "fire": -1.3, "water": -0.8, "crowd": 0.6, "traffic": -0.4, "night": 0.4},
       targets=THEM, negated="stopping to check on {target}", mods=("time",)),
    _a("stepping in to help", 3.5, "image",
       {"elderly": 0.8, "child": 0.7, "fire": -0.7, "water": -0.6, "traffic": -0.5, "crowd": -0.5, "night": -0.3},
       negated="staying out of it", mods=("soft",)),
    _a("leaving {target} on their own for a while", 2.7, "image",
       {"child": -1.2, "elderly": -0.8, "fire": -1.0, "water": -1.1, "traffic": -0.9, "crowd": 0.3, "night": -0.6},
       targets=THEM, negated="staying with {target} for a while", mods=("errand",)),
    _a("turning off the lights", 3.45, "image", {"night": -0.8, "crowd": -0.6, "elderly": -0.5, "child": -0.3},
       mods=("ask", "soft"), places=INDOOR),
    _a("playing loud music", 2.7, "image", {"night": -1.0, "crowd": 0.7, "elderly": -0.6, "child": -0.3},
       mods=("duration", "ask")),
    _a("bringing a flashlight", 3.45, "image", {"night": 1.2, "water": 0.3, "fire": -0.3},
       negated="going without a flashlight", mods=("soft",)),
    _a("staying a little longer", 3.45, "image",
       {"night": -0.7, "child": 0.4, "elderly": 0.6, "fire": -1.0, "water": -0.4},
       mods=("soft",)),
    _a("running over to {target}", 2.75, "image",
       {"traffic": -1.2, "water": -0.4, "child": 0.5, "elderly": 0.4, "crowd": -0.3, "night": -0.3},
       targets=THEM, mods=("soft",)),
    _a("letting {target} go first", 3.45, "image",
       {"elderly": 0.9, "child": 0.6, "traffic": -0.6, "crowd": 0.3, "fire": -0.5},
       targets=THEM, negated="making {target} wait behind you", mods=("soft",)),
    _a("waiting here until it is over", 2.75, "image",
       {"fire": -0.9, "water": -0.6, "crowd": 0.4, "night": -0.4, "child": -0.2}, ),
    _a("calling out to {target}", 3.45, "image",
       {"traffic": 0.6, "fire": 0.8, "water": 0.7, "night": -0.3, "crowd": -0.2, "child": 0.2},
       targets=THEM, negated="not saying anything to {target}", mods=("soft",)),
    _a("keeping quiet about it", 2.7, "image",
       {"fire": -1.3, "water": -0.8, "child": -0.6, "traffic": -0.7, "crowd": 0.3},
       negated="speaking up about it", mods=("time",)),
    _a("giving {target} some space", 3.45, "image",
       {"crowd": 0.4, "elderly": -0.5, "child": -0.7, "fire": -0.8, "water": -0.6},
       targets=THEM, mods=("soft",)),
    _a("going in after {target}", 2.75, "image",
       {"fire": -1.0, "water": -0.9, "child": 0.9, "night": -0.4, "traffic": -0.6},
       targets=THEM, negated="waiting outside for {target}", mods=("soft",)),
    _a("sitting down next to {target}", 3.45, "image",
       {"elderly": 0.6, "child": -0.5, "night": -0.6, "crowd": 0.2},
       targets=THEM, mods=("soft", "ask")),
    _a("drinking something to cool off", 3.5, "image",
       {"fire": -0.6, "crowd": -0.2, "child": -0.3, "water": -0.5, "night": -0.2},
       mods=("soft",)),
    _a("getting {target} some water", 3.5, "image",
       {"elderly": 0.7, "fire": 0.6, "child": 0.4, "crowd": -0.2},
       targets=THEM, mods=("soft",)),
    _a("crossing right here", 2.7, "image",
       {"traffic": -1.4, "child": -0.6, "night": -0.6, "crowd": 0.3, "elderly": -0.3, "water": -0.5},
       negated="walking to the crosswalk first", places=("street", "park"), mods=("soft",)),
    _a("letting {target} cut ahead in line", 3.45, "image",
       {"elderly": 0.9, "child": 0.5, "crowd": -0.6},
       targets=THEM, places=("store", "office", "classroom", "kitchen"), mods=("soft",)),
    _a("cooking a late snack", 3.45, "image", {"night": -0.5, "crowd": -0.3, "child": 0.4, "fire": -0.7},
       places=HOME, mods=("soft", "ask")),
    _a("opening the window", 3.45, "image", {"fire": 0.8, "night": -0.3, "crowd": 0.3, "elderly": -0.3},
       places=INDOOR, mods=("ask", "soft")),
    _a("talking during the lesson", 2.5, "image", {"crowd": -0.6, "child": 0.3, "night": 0.2, "fire": 0.9},
       places=("classroom",), mods=("time",)),
    _a("staying late at work", 2.75, "image", {"night": -0.6, "child": -0.7, "crowd": 0.3, "elderly": -0.2},
       places=("office",), mods=("time", "duration")),
    _a("leaving the cart in the aisle", 2.5, "image", {"crowd": -0.7, "elderly": -0.5, "water": 0.4, "child": -0.3},
       places=("store",), mods=("time",)),
    _a("moving closer for a better look", 2.7, "image",
       {"fire": -1.1, "water": -0.7, "traffic": -0.8, "crowd": -0.3, "child": -0.2},
       mods=("soft",), places=PLACES),
    _a("heading home now", 2.7, "image",
       {"night": 0.6, "child": -0.8, "elderly": -0.6, "fire": -1.0, "water": -0.7, "crowd": 0.3},
       negated="staying behind for now", mods=("soft",)),
    _a("asking {target} to move", 3.45, "image",
       {"crowd": -0.6, "elderly": -0.8, "traffic": 0.9, "fire": 0.9, "water": 0.5, "child": -0.3},
       targets=THEM, negated="letting {target} stay where they are", mods=("soft",)),
    _a("lending {target} a hand", 3.45, "image",
       {"elderly": 0.8, "child": 0.5, "fire": -0.6, "traffic": -0.4, "crowd": -0.4},
       targets=THEM, negated="not lending {target} a hand", mods=("soft",)),
    _a("turning the music up", 2.5, "image",
       {"crowd": 0.9, "night": -0.8, "elderly": -0.6, "child": -0.4}, mods=("ask",), places=INDOOR + ("park",)),
    _a("joining in", 2.75, "image",
       {"crowd": 0.7, "child": -0.6, "fire": -0.9, "water": -0.6, "night": -0.3}, mods=("soft",)),

    # ---- both: specific wording whose meaning turns on the scene ----------------------------
    _a("giving {target} a ride", 3.9, "both",
       {"night": -0.9, "child": -1.5, "elderly": 1.0, "water": 0.8, "fire": 1.2, "crowd": 0.3},
       targets=(("a stranger", -0.9), ("a neighbor", 0.2), ("a coworker", 0.1), ("a hitchhiker", -1.0)),
       negated="refusing to give {target} a ride", mods=("motive",), places=("street", "park", "office", "store")),
    _a("leaving {target} alone for a minute", 3.4, "both",
       {"fire": -2.0, "water": -2.2, "traffic": -1.8, "night": -0.6, "crowd": -0.4},
       targets=(("your toddler", -0.8), ("your little brother", -0.5), ("your grandmother", -0.3), ("the dog", 0.0)),
       mods=("errand",)),
    _a("breaking a window to get in", 1.8, "both",
       {"fire": 2.6, "water": 1.0, "child": 1.2, "night": -0.5, "crowd": -0.4},
       mods=("motive",), places=("street", "kitchen", "living_room", "store", "office")),
    _a("letting your kid play outside", 4.0, "both",
       {"traffic": -1.9, "water": -1.6, "night": -1.6, "fire": -1.8, "crowd": -0.3},
       negated="keeping your kid indoors all day", mods=("time",), places=("street", "park", "living_room")),
    _a("running a red light", 1.5, "both",
       {"fire": 2.2, "traffic": -0.8, "crowd": -1.0, "night": 0.4, "elderly": -0.6, "child": -0.9},
       mods=("motive",), places=("street",)),
    _a("shouting at {target}", 1.9, "both",
       {"traffic": 2.0, "fire": 2.1, "water": 1.5, "crowd": -0.5, "night": -0.3},
       targets=(("a stranger", -0.1), ("your friend", 0.0), ("your kid", -0.2)), mods=("motive",)),
    _a("grabbing {target} by the arm", 2.2, "both",
       {"traffic": 2.1, "water": 1.8, "fire": 1.9, "crowd": -0.5, "night": -0.2},
       targets=(("a stranger", -0.6), ("a child", -0.2), ("your friend", 0.2)), mods=("ask",)),
    _a("lighting candles", 3.8, "both",
       {"child": -1.2, "fire": -0.8, "crowd": -0.7, "night": 0.5, "elderly": -0.4},
       mods=("ask", "time"), places=INDOOR),
    _a("taking the last slice", 3.2, "both", {"crowd": -1.0, "child": -0.8, "elderly": -0.6},
       mods=("ask",), places=("kitchen", "living_room", "office", "classroom"),
       negated="leaving the last slice for someone else"),
    _a("leaving the stove on", 2.2, "both",
       {"fire": -1.6, "child": -1.2, "crowd": 0.2, "night": -0.5, "elderly": -0.6},
       mods=("time", "motive"), places=("kitchen",)),
    _a("pushing past {target}", 1.8, "both",
       {"fire": 2.0, "water": 0.8, "crowd": -0.4, "traffic": 0.8},
       targets=(("the people in front", 0.0), ("an old man", -0.6), ("a child", -0.5))),
    _a("letting {target} walk home alone", 3.6, "both",
       {"night": -1.8, "traffic": -1.2, "water": -0.8, "crowd": 0.4, "child": -0.6},
       targets=(("your ten-year-old", -0.6), ("your teenage son", 0.0), ("your friend", 0.3),
                ("your grandmother", -0.3)),
       mods=("motive",), places=("street", "park", "classroom", "office", "store")),
    _a("using your phone", 3.2, "both",
       {"traffic": -1.8, "child": -0.8, "water": -1.0, "fire": -1.2, "night": 0.2},
       mods=("duration", "audience")),
    _a("cutting in line", 1.8, "both", {"crowd": -0.8, "elderly": -0.6, "fire": 1.6, "child": -0.3},
       mods=("motive", "ask"), places=("store", "office", "classroom", "street")),
    _a("taking the shortcut through the park", 3.4, "both",
       {"night": -1.6, "water": -0.6, "traffic": 0.5, "crowd": 0.4},
       mods=("motive",), places=("park", "street")),
    _a("giving {target} a hug", 3.6, "both",
       {"crowd": -0.6, "elderly": 0.5, "fire": 1.0, "night": -0.3, "child": -0.6},
       targets=(("your coworker", -0.3), ("a stranger", -1.0), ("a crying friend", 0.4)),
       mods=("ask",)),
    _a("opening the door to {target}", 3.6, "both",
       {"night": -1.3, "child": -0.7, "elderly": 0.4, "water": 0.8, "fire": 1.2},
       targets=(("a stranger", -0.8), ("a delivery driver", 0.0), ("a neighbor", 0.3)),
       mods=("ask",), places=HOME),
    _a("taking a nap", 3.4, "both",
       {"child": -1.6, "fire": -1.8, "water": -1.0, "elderly": -0.6, "crowd": -0.4, "night": 0.6},
       mods=("duration",)),
    _a("swimming out to the middle", 3.0, "both",
       {"night": -1.6, "child": -0.8, "crowd": 0.4, "fire": 0.6},
       mods=("motive",), places=("park",)),
    _a("letting {target} use the stove", 3.5, "both",
       {"child": -1.7, "elderly": 0.5, "fire": -1.4, "crowd": -0.3},
       targets=(("your nephew", -0.3), ("a guest", 0.1), ("your roommate", 0.2)), mods=("ask",),
       places=("kitchen",)),
    _a("climbing over the fence", 2.3, "both",
       {"fire": 2.0, "water": 1.4, "child": 1.0, "night": -0.8, "crowd": -0.5},
       mods=("motive",), places=("park", "street", "store")),
    _a("staying out late with friends", 3.5, "both",
       {"night": -0.9, "child": -1.1, "crowd": 0.4, "traffic": -0.4},
       mods=("time", "ask"), places=("street", "park", "living_room")),
)

NORMBANK_THRESHOLDS = (2.6, 3.4)  # base <= 2.6: -1, base >= 3.4: +1 (categorical labels lean early)


def normbank_label(base: float | np.ndarray, thresholds: tuple[float, float] = NORMBANK_THRESHOLDS):
    """Text-only NormBank-style label: -1 ("you shouldn't") / 0 / +1 ("you should")."""
    lo, hi = thresholds
    b = np.asarray(base, dtype=float)
    return np.where(b >= hi, 1, np.where(b <= lo, -1, 0)).astype(np.int8)


# --------------------------------------------------------------------------- compositions


@dataclass(frozen=True)
class Pool:
    """Every sentence that can be written about scenes at one place, as parallel arrays."""

    place: str
    text: np.ndarray         # str, the scenario sentence
    action: np.ndarray       # int, index into ACTIONS
    kind: np.ndarray         # int, index into KINDS
    base: np.ndarray         # float, base acceptability of the sentence
    effects: np.ndarray      # (n, len(CUES)) signed cue effects (negation applied)
    negated: np.ndarray      # bool

    def __len__(self) -> int:
        return len(self.text)


def compose(action: Action) -> list[tuple[str, float, bool]]:
    """All sentences of one action: (text, base acceptability, negated)."""
    out = []
    targets = action.targets or ((None, 0.0),)
    for target, tdelta in targets:
        variants = [(False, action.phrase)]
        if action.negated:
            variants.append((True, action.negated))
        for negated, phrase in variants:
            core = phrase.format(target=target) if target else phrase
            b0 = action.base + tdelta
            b0 = 6.0 - b0 if negated else b0
            # slot 1: one of the action's own modifiers (or none); slot 2: a situational one (or none)
            own = [Modifier("", 0.0)] + [m for g in action.mods if not negated or g in NEGATION_GROUPS
                                         for m in MODIFIERS[g]]
            situational = [Modifier("", 0.0)] + [m for g in UNIVERSAL_GROUPS for m in MODIFIERS[g]]
            for first in own:
                for second in situational:
                    if not _read_well_together(first.text, second.text):
                        continue
                    text = " ".join(t for t in (core, first.text, second.text) if t)
                    out.append((text, b0 + first.delta + second.delta, negated))
    return [(t, float(np.clip(b, 1.0, 5.0)), n) for t, b, n in out]


def _read_well_together(first: str, second: str) -> bool:
    """Two trailing modifiers, unless they clash ("after being told not to after a long day")."""
    if not first or not second:
        return True
    return first.split()[0] != second.split()[0]


@lru_cache(maxsize=None)
def pool_for(place: str) -> Pool:
    """The composition table of one place (cached: it is the same for every image there)."""
    texts, acts, kinds, bases, effects, negs = [], [], [], [], [], []
    for ai, action in enumerate(ACTIONS):
        if place not in action.places:
            continue
        eff = np.array([action.effects.get(c, 0.0) for c in CUES])
        for text, base, negated in compose(action):
            texts.append(text)
            acts.append(ai)
            kinds.append(KINDS.index(action.kind))
            bases.append(base)
            effects.append(-eff if negated else eff)
            negs.append(negated)
    return Pool(place, np.array(texts, dtype=object), np.array(acts), np.array(kinds), np.array(bases),
                np.array(effects).reshape(-1, len(CUES)), np.array(negs))


def validate_lexicon() -> list[str]:
    """Consistency checks of the curated data (used by the tests)."""
    problems = []
    for a in ACTIONS:
        if a.kind not in KINDS:
            problems.append(f"{a.phrase}: unknown kind {a.kind}")
        if ("{target}" in a.phrase) != bool(a.targets):
            problems.append(f"{a.phrase}: targets and {{target}} slot disagree")
        if a.negated and "{target}" in a.negated and not a.targets:
            problems.append(f"{a.phrase}: negated phrase has a {{target}} slot but the action no targets")
        if a.kind == "text" and a.effects:
            problems.append(f"{a.phrase}: text-grounded actions have no cue effects")
        if a.kind != "text" and not a.effects:
            problems.append(f"{a.phrase}: {a.kind}-grounded actions need cue effects")
        for c in a.effects:
            if c not in CUES:
                problems.append(f"{a.phrase}: unknown cue {c}")
        for p in a.places:
            if p not in PLACES:
                problems.append(f"{a.phrase}: unknown place {p}")
        for g in a.mods:
            if g not in MODIFIERS:
                problems.append(f"{a.phrase}: unknown modifier group {g}")
    for s in SETTINGS:
        if s.place not in PLACES or not s.cues <= set(CUES):
            problems.append(f"setting {s.text!r}: unknown place or cue")
    for place in PLACES:
        kinds = {ACTIONS[i].kind for i in set(pool_for(place).action.tolist())}
        if kinds != set(KINDS):
            problems.append(f"{place}: actions of every kind needed, have {sorted(kinds)}")
    return problems
