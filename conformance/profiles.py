"""Precision profiles: what a port computing in float64, float32, bfloat16, float16 or int8
must achieve (spec TOL-1, ``spec/tolerances.md``).

A port declares its profile as ``Capabilities(dtype=...)``; ``python -m conformance
--profile NAME`` checks it against another one (the report's ``precision`` says which).
A profile has two parts:

* ``rtol``: the elementwise TOL-1 bound, ``max|a - b| / max|b| <= rtol`` for every compared
  array (logits, features, stages), port vs the float64 oracle;
* task-level agreement on real data, where elementwise error is not the whole story
  (quantised ports): on the 359 bundled test digits (``adaperceiver.digits``, the
  trained ``cls-digits-trained`` checkpoint) the port's top-1 class agrees with the
  oracle's on at least ``min_top1_agreement`` of the images and its accuracy is at most
  ``max_accuracy_drop`` below the oracle's (``test_task.py``).

How the numbers were measured (``python -m conformance.measure_profiles``, 2 CPU cores,
torch 2.13; the PyTorch model in each precision against the committed goldens, 60 cases,
largest relative error of the logits / features over the cases, and the digits test split):

========  ==============  ==============  ===========  =========  ==================
profile   logits max      features max    top-1 agr.   accuracy   rtol chosen
========  ==============  ==============  ===========  =========  ==================
float32   6.9e-7          3.3e-7          1.0000       0.9777     1e-4 (TOL-1)
bfloat16  1.7e-2          8.7e-3          1.0000       0.9777     3e-2 (TOL-1)
float16   1.9e-3          9.7e-4          1.0000       0.9777     5e-3
int8      2.5e-2          2.7e-2          1.0000       0.9777     8e-2
========  ==============  ==============  ===========  =========  ==================

(oracle accuracy 0.9777.) float64 is the oracle's own arithmetic (1e-10 allows another
summation order). The reduced-precision rows cast weights and images to the dtype
(``model.to(dtype)``, every operation in it; autocast, which keeps norms and softmax in
float32, is closer still). int8 is ONNX Runtime's dynamic quantisation of every linear
layer (weights int8 per output channel, activations uint8 per tensor scaled at run time,
int32 accumulation), simulated exactly in float64 arithmetic on the integers
(``measure_profiles.dynamic_int8``). Chosen bounds leave 1.6x (bfloat16) to 3x headroom
over the measured maxima, since deeper and wider models than the goldens' tiny ones
accumulate more rounding; the task-level bounds allow one (float32), three (bfloat16,
float16) or seven (int8) of the 359 digits to change class, where none did.

This module imports nothing beyond the standard library, so ports and other tools
(the performance paths' bf16 / int8 adapters) can read it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    """One precision profile (see the module docstring for how each number was measured)."""

    name: str
    rtol: float  # TOL-1 elementwise relative error bound, port vs float64 oracle
    min_top1_agreement: float  # fraction of bundled test digits whose class equals the oracle's
    max_accuracy_drop: float  # oracle accuracy minus port accuracy on those digits, at most
    measured: str  # the measurement behind rtol, shown in the report


PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("float64", 1e-10, 1.0, 0.0, "the oracle's arithmetic up to summation order"),
    Profile("float32", 1e-4, 358 / 359, 1 / 359,
            "PyTorch float32 vs oracle on the goldens: max 6.9e-7"),
    Profile("bfloat16", 3e-2, 356 / 359, 3 / 359,
            "PyTorch bfloat16 vs oracle on the goldens: max 1.7e-2"),
    Profile("float16", 5e-3, 356 / 359, 3 / 359,
            "PyTorch float16 vs oracle on the goldens: max 1.9e-3"),
    Profile("int8", 8e-2, 352 / 359, 7 / 359,
            "dynamic int8 linears (ONNX Runtime scheme) vs oracle on the goldens: max 2.7e-2"),
)}


def profile(name: str) -> Profile:
    """The profile called ``name``; ``ValueError`` naming the allowed ones otherwise."""
    if name not in PROFILES:
        raise ValueError(f"precision profile must be one of {', '.join(PROFILES)}, "
                         f"got {name!r}")
    return PROFILES[name]
