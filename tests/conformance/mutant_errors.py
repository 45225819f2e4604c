"""How far each mutant of ``suite_mutants`` is from the committed goldens, per case.

    PYTHONPATH=.:tests/conformance python tests/conformance/mutant_errors.py [MUTANT ...]

prints, for every mutant, the largest relative error (TOL-1 measure,
``conformance.tolerances.errors``) of its logits / features over the tolerance on the
goldens of its ``MUTANTS`` entry (run in that order, one handle per checkpoint, as the
suite shares them: a state leak shows), then every other golden it misses (on fresh handles).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from conformance import callargs
from conformance.goldens import GOLDENS_DIR, case_tensors, case_tolerance, load_manifest
from conformance.protocol import PortAdapter
from conformance.tolerances import default_tolerance, errors


def golden_errors(port: PortAdapter, case_ids: Sequence[str] | None = None, *,
                  shared: bool = False) -> dict[str, tuple[float, float]]:
    """Case id -> (largest relative error of logits / features, its case's rtol), for the
    cases ``case_ids`` in that order (default: all); ``shared``: one handle per checkpoint
    for all cases, else a fresh one per case."""
    manifest = load_manifest()
    by_id = {case["id"]: case for case in manifest["cases"]}
    handles: dict[str, object] = {}
    found = {}
    for case_id in case_ids if case_ids is not None else list(by_id):
        case = by_id[case_id]
        name = case["checkpoint"]
        directory = str(GOLDENS_DIR / manifest["checkpoints"][name]["path"])
        handle = handles.setdefault(name, port.load(directory)) if shared else port.load(
            directory)
        tensors = case_tensors(GOLDENS_DIR, case)
        method = port.distill if case["method"] == "distill" else port.classify
        out = method(handle, tensors["images"], **callargs.decode(case["call_args"]))
        rel = max(errors(out[key], tensors[key])[1] for key in ("logits", "features")
                  if key in tensors)
        rtol = case_tolerance(case, default_tolerance(port.capabilities.dtype),
                              port.capabilities.dtype).rtol
        found[case["id"]] = (rel, rtol)
    return found


def main(argv: Sequence[str]) -> int:
    import suite_mutants

    for name in argv or list(suite_mutants.MUTANTS):
        port = getattr(suite_mutants, name)()
        listed = suite_mutants.MUTANTS[name].goldens if name in suite_mutants.MUTANTS else ()
        mine = golden_errors(port, listed, shared=True)
        print(f"{name}: " + ", ".join(f"{case} {rel / rtol:.3g} x" for case, (rel, rtol)
                                      in mine.items()))
        found = golden_errors(port)
        missed = {case: rel / rtol for case, (rel, rtol) in found.items() if rel > rtol}
        worst = max(missed.values(), default=0.0)
        print(f"    misses {len(missed)}/{len(found)} goldens on fresh handles, worst "
              f"{worst:.3g} x rtol")
        for case, ratio in sorted(missed.items(), key=lambda kv: -kv[1]):
            print(f"    {case}: {ratio:.3g} x rtol")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
