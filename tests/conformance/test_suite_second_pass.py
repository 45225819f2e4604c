"""What an outside porter ran into (issue 12), each checked on a mutant port or a bad input:
per-clause attribution, state leaks caught by the goldens on a shared handle in a seeded
random order, NumPy-typed repros that reproduce, clean errors for unusable options (F10, N7),
an untouched working directory, the console script, and resumable golden recording."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import tomllib
from suite_helpers import ROOT, failed_clauses, run_command, run_suite

from conformance import callargs
from conformance.exclusions import load_exclusions
from conformance.goldens import case_tensors

GOLDEN_SUBSET = "test_golden and (cls-default or cls-gran or cls-width-4)"


def test_stateful_port_fails_goldens_as_state_1_with_replayable_repro(tmp_path):
    """STATE-1: with upstream's mask cache, goldens sharing one handle in a seeded random
    order fail, every failure counts against STATE-1 only, carries a first divergent stage
    and a fresh-handle repro with the earlier call(s), and the repro command reproduces it."""
    done, report = run_suite("suite_mutants:stateful", tmp_path, "-k", GOLDEN_SUBSET,
                             options=("--seed", "1"))
    assert done.returncode == 1, done.stdout[-3000:]
    assert report["seed"] == 1 and "order seed 1 (repeat with --seed 1)" in done.stdout
    assert report["failures"] and failed_clauses(report) == {"STATE-1"}
    for failure in report["failures"]:
        assert failure["clauses"] == ["STATE-1"]
        assert failure["first_divergent_stage"]["stage"].startswith("block_")
        assert failure["repro"]["check"] == "fresh-handle" and failure["repro"]["history"]
    rerun = run_command("-m", "conformance.repro", "--impl", "suite_mutants:stateful",
                        "--report", str(tmp_path / "report.json"), "--test",
                        report["failures"][0]["id"])
    assert rerun.returncode == 0, rerun.stderr
    assert "reproduced: FAILS (STATE-1" in rerun.stdout
    assert "stage errors (forward order):" in rerun.stdout


def test_one_wrong_bias_fails_one_clause(tmp_path):
    """HEAD-1 only: a port adding 0.01 to every logit fails the goldens, each failure located
    at the head (every stage matches), and no other clause is counted as failed."""
    done, report = run_suite("suite_mutants:shifted_logits", tmp_path, "-k",
                             GOLDEN_SUBSET + " or distill-default or stateless_after")
    assert done.returncode == 1, done.stdout[-3000:]
    assert len(report["failures"]) >= 5
    assert failed_clauses(report) == {"HEAD-1"}
    assert all(f["first_divergent_stage"]["stage"] == "head" for f in report["failures"])
    assert report["worst_errors"]["accuracy"]["logits"]["max_rel"] > 1e-4
    assert report["worst_errors"]["invariant"]["logits"]["max_rel"] <= 1e-4  # STATE-1 passes


def test_numpy_argument_crash_is_arg_1_and_its_repro_reproduces(tmp_path):
    """ARG-1: a port that crashes on a NumPy integer num_tokens (as upstream's flex path does)
    fails only ARG-1; the repro records np.int64 and re-running it crashes again."""
    done, report = run_suite("suite_mutants:rejects_numpy_tokens", tmp_path, "-k", "numpy")
    assert done.returncode == 1, done.stdout[-3000:]
    (failure,) = report["failures"]
    assert failed_clauses(report) == {"ARG-1"}
    assert failure["repro"]["call_args"] == {"num_tokens": {"numpy": "int64", "value": 6}}
    assert callargs.decode(failure["repro"]["call_args"])["num_tokens"].dtype == np.int64
    rerun = run_command("-m", "conformance.repro", "--impl", "suite_mutants:rejects_numpy_tokens",
                        "--report", str(tmp_path / "report.json"))
    assert "reproduced: the port raises TypeError" in rerun.stdout, rerun.stdout + rerun.stderr


def test_typed_call_arguments_round_trip():
    args = {"num_tokens": np.int64(6), "mat_dim": [np.int32(4), 7], "depth_tau": np.float32(0.5),
            "token_grans": np.array([2, 4]), "exit_policy": "per_sample", "depth": None}
    back = callargs.decode(json.loads(json.dumps(callargs.encode(args))))
    assert type(back["num_tokens"]) is np.int64 and back["num_tokens"] == 6
    assert [type(v) for v in back["mat_dim"]] == [np.int32, int]
    assert type(back["depth_tau"]) is np.float32
    assert back["token_grans"].tolist() == [2, 4] and back["token_grans"].dtype == np.int64
    assert back["exit_policy"] == "per_sample" and back["depth"] is None


@pytest.mark.parametrize(("factory", "problem"), [
    ("suite_bad_factories:raises", "calling raises() raised RuntimeError: no accelerator"),
    ("suite_bad_factories:needs_arguments", "the factory must take no arguments"),
    ("suite_bad_factories:exits", "raised SystemExit"),
    ("suite_bad_factories:returns_str", "returned a str ('adapter'), not an adapter"),
    ("suite_bad_factories:bad_dtype", "dtype must be one of"),
    ("broken_syntax:factory", "importing broken_syntax failed: SyntaxError"),
])
def test_unusable_factory_is_one_error_line(tmp_path, factory, problem):
    """F10, N7: every way a factory fails is one `ERROR: conformance: ...` line and exit
    status 4 (usage error), never a pytest INTERNALERROR."""
    (tmp_path / "broken_syntax.py").write_text("def factory(:\n")
    done, report = run_suite(factory, tmp_path, env={"PYTHONPATH": str(tmp_path)})
    output = done.stdout + done.stderr
    assert done.returncode == 4, output[-2000:]
    assert "INTERNALERROR" not in output
    assert f"ERROR: conformance: --impl '{factory}': " in output and problem in output
    assert report is None


@pytest.mark.parametrize(("options", "problem"), [
    (("--exclusions", "{tmp}/x.yaml"),
     "exclusion file {tmp}/x.yaml: the name must end in .toml or .json"),
    (("--exclusions", "{tmp}/bad.toml"), "exclusion file {tmp}/bad.toml: invalid TOML"),
    (("--published-goldens", "{tmp}/none"), "--published-goldens {tmp}/none: no such directory"),
])
def test_unusable_options_fail_before_the_run(tmp_path, options, problem):
    """N7: an exclusion file with another extension or broken TOML (named), a missing
    published-goldens directory and an unwritable report path are errors up front (exit 4)."""
    (tmp_path / "x.yaml").write_text("exclusion: []\n")
    (tmp_path / "bad.toml").write_text("[[exclusion]]\nreason = \n")
    options = tuple(o.format(tmp=tmp_path) for o in options)
    done, _ = run_suite("conformance.adapters.oracle:factory", tmp_path, options=options)
    assert done.returncode == 4, (done.stdout + done.stderr)[-2000:]
    assert f"ERROR: conformance: {problem.format(tmp=tmp_path)}" in done.stdout + done.stderr
    missing = run_command("-m", "conformance", "--impl", "conformance.adapters.oracle:factory",
                          "--report", str(tmp_path / "no" / "r.json"))
    assert missing.returncode == 4 and "--report" in missing.stderr + missing.stdout


def test_malformed_files_name_themselves(tmp_path):
    """N7: a malformed exclusion file and a corrupt golden file are errors naming the file."""
    (tmp_path / "e.json").write_text("{nope")
    with pytest.raises(ValueError, match=r"exclusion file .*e\.json: invalid JSON"):
        load_exclusions(tmp_path / "e.json")
    (tmp_path / "cases").mkdir()
    (tmp_path / "cases" / "c.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match=r"golden file .*c\.safetensors \(case 'c'\)"):
        case_tensors(tmp_path, {"id": "c", "file": "cases/c.safetensors"})


def test_run_leaves_the_working_directory_untouched(tmp_path):
    """A suite run, Hypothesis properties included, writes nothing (no .hypothesis/) into the
    porter's working directory."""
    cwd = tmp_path / "porter"
    cwd.mkdir()
    done, report = run_suite("conformance.adapters.torch_port:float32", tmp_path, "-k",
                             "test_width_nesting or test_output_shapes", cwd=cwd)
    assert done.returncode == 0, done.stdout[-3000:]
    assert report["totals"]["passed"] == 3
    assert list(cwd.iterdir()) == []


def test_console_script_is_the_module_command():
    """`conformance --impl ...` is `python -m conformance --impl ...` ([project.scripts])."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["conformance"] == "conformance.__main__:main"
    done = run_command("-c", "import sys; from conformance.__main__ import main; "
                             "sys.argv = ['conformance', '--help']; main()")
    assert done.returncode == 0 and done.stdout.startswith("usage: conformance [-h] --impl")
    assert "--seed N" in done.stdout


def test_same_seed_same_order(tmp_path):
    """The goldens and invariants run in the order the seed gives, repeatably."""
    orders = []
    for run in ("a", "b", "c"):
        (tmp_path / run).mkdir()
        seed = "5" if run != "c" else "6"
        _, report = run_suite("conformance.adapters.oracle:factory", tmp_path / run, "-k",
                              "test_golden and cls-gran", options=("--seed", seed))
        orders.append([t["id"] for t in report["tests"]])
    assert orders[0] == orders[1] and sorted(orders[0]) == sorted(orders[2])
    assert len(orders[0]) == 7 and orders[0] != orders[2]  # seeds 5 and 6 differ


def test_record_resumes_after_an_interrupt(tmp_path, monkeypatch, capsys):
    """`goldens record` shows a progress bar with an ETA, and after an interrupt computes only
    the missing runs; the result equals an uninterrupted recording."""
    import reference_numpy
    from conformance import published
    from conformance.cases import MODELS

    checkpoint = MODELS["cls-flex-block"].write(tmp_path / "weights")
    clean = published.record(str(checkpoint), tmp_path / "clean.safetensors")
    assert "recording weights" in capsys.readouterr().err
    real, calls = reference_numpy.trace, []

    def interrupted(*args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(reference_numpy, "trace", interrupted)
    out = tmp_path / "resumed.safetensors"
    with pytest.raises(KeyboardInterrupt):
        published.record(str(checkpoint), out)
    assert not out.exists() and (tmp_path / "resumed.safetensors.partial").is_dir()
    capsys.readouterr()
    counted = []
    monkeypatch.setattr(reference_numpy, "trace",
                        lambda *a, **k: counted.append(k) or real(*a, **k))
    published.record(str(checkpoint), out)
    bar = capsys.readouterr().err
    total = len(published.read(clean).calls)
    assert len(counted) == total - 3  # the three finished calls were not recomputed
    assert re.search(r"\d\d:\d\d<\d\d:\d\d", bar)  # tqdm's elapsed<remaining (the ETA)
    assert not (tmp_path / "resumed.safetensors.partial").exists()
    a, b = published.read(clean), published.read(out)
    assert a.calls == b.calls
    for x, y in zip(a.expected, b.expected, strict=True):
        assert x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
