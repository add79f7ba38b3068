"""Registries, generated options and flags, ``metajax list``, and a plugin run through the command."""

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from metajax.cli import main
from metajax.options import option, resolve_options
from metajax.registry import (
    CONTINUAL_STRATEGIES,
    META_LEARNERS,
    MODELS,
    MULTITASK_MODELS,
    MULTITASK_WEIGHTINGS,
    Registry,
    UnknownName,
)
from metajax.train.continual_config import ContinualConfig

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@dataclasses.dataclass(frozen=True)
class _Options:
    size: int = option(3, "a size", minimum=1)
    rate: float = option(0.5, "a rate", above=0, maximum=1)
    kind: str = option("a", "a kind", choices=("a", "b"))


def _registry():
    registry = Registry("toy", family="shared", builtins="metajax", option="toy")
    registry.register("first", lambda options: options, hyperparams=_Options, description="The first.")
    registry.register("second", lambda options: None, description="The second.", aliases=("2nd",), marked=True)
    return registry


def test_a_registry_finds_entries_by_name_and_alias_and_lists_the_rest_in_one_line():
    registry = _registry()
    assert registry.names() == ("first", "second")
    assert registry.get("2nd") is registry.get("second") and registry.get("second").trait("marked")
    with pytest.raises(UnknownName, match=r"^toy must be one of first, second, got 'third'$"):
        registry.get("third")
    with pytest.raises(ValueError, match="toy 'first' is registered already"):
        registry.register("first", lambda options: None, description="Again.")
    with pytest.raises(ValueError, match="one non-empty line"):
        registry.register("third", lambda options: None, description="two\nlines")
    with pytest.raises(ValueError, match="hyperparams must be a dataclass"):
        registry.register("fourth", lambda options: None, description="x", hyperparams=dict)


def test_options_take_their_defaults_and_check_given_values():
    assert resolve_options(_Options, {}, owner="toy first") == {"size": 3, "rate": 0.5, "kind": "a"}
    assert resolve_options(_Options, {"rate": 1}, owner="toy first")["rate"] == 1.0  # An int for a float.
    for given, message in [
        ({"size": 0}, "size must be a positive integer, got 0"),
        ({"rate": 0.0}, "rate must be > 0, got 0.0"),
        ({"rate": 2.0}, "rate must be <= 1, got 2.0"),
        ({"kind": "c"}, "kind must be one of a, b, got 'c'"),
        ({"size": 1.5}, "size must be an integer, got 1.5"),
        ({"colour": "red"}, "toy first has no option 'colour'"),
    ]:
        with pytest.raises(ValueError, match=message):
            resolve_options(_Options, given, owner="toy first")
    known = {field.name: (_Options, field) for field in dataclasses.fields(_Options)}
    with pytest.raises(ValueError, match=r"--size does not apply to toy second \(its options: none\)"):
        resolve_options(None, {"size": 2}, owner="toy second", known=known)


def test_a_continual_config_fills_each_methods_options_and_refuses_another_methods():
    config = ContinualConfig(strategy="der++", model_options={"hidden": [100, 100]}).resolved()
    assert config.strategy_options["der_beta"] == 0.5 and config.strategy_options["buffer_update"] == "step"
    assert config.model_options == {"hidden": (100, 100)}
    with pytest.raises(ValueError, match="--ewc-lambda does not apply to strategy replay"):
        ContinualConfig(strategy="replay", strategy_options={"ewc_lambda": 1.0}).resolved()
    with pytest.raises(ValueError, match="--hidden does not apply to model conv4"):
        ContinualConfig(model="conv4", model_options={"hidden": (3,)}).resolved()
    with pytest.raises(ValueError, match="model must be one of mlp, conv4, resnet18, reduced-resnet18, got 'vit'"):
        ContinualConfig(model="vit").resolved()


def test_every_strategy_and_model_option_is_a_flag_of_the_command(capsys):
    with pytest.raises(SystemExit):
        main(["continual", "--help"])
    text = capsys.readouterr().out
    for registry in (CONTINUAL_STRATEGIES, MODELS):
        for entry in registry:
            for field in dataclasses.fields(entry.hyperparams or _NoOptions):
                assert f"--{field.name.replace('_', '-')}" in text
    assert "der, der++, xder: 500" in " ".join(text.split())  # Each method's own default, where they differ.


@dataclasses.dataclass(frozen=True)
class _NoOptions:
    pass


def test_metajax_list_shows_every_entry_with_its_description(capsys):
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    names = ("der++", "replay", "ewc", "split-mnist", "permuted-mnist", "conv4", "mlp", "dwa", "mgda", "pcgrad",
             "r2d2", "reptile", "maml", "protonets", "omniglot", "sinusoid", "mmoe", "shared-bottom", "ple",
             "synthetic", "census", "folder", "npz")  # fmt: skip
    for name in names:
        assert f"    {name} " in text
    for citation in ("Buzzega et al. 2020", "Bertinetto et al. 2019", "Liu et al. 2019", "Sener & Koltun 2018"):
        assert citation in text
    assert main(["list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {row["name"] for row in listed["multi-task"]["multi-task model"]} == set(MULTITASK_MODELS.names())
    assert {row["name"] for row in listed["multi-task"]["multi-task dataset"]} == {"synthetic", "census", "npz"}
    strategies = {row["name"]: row for row in listed["continual"]["continual strategy"]}
    assert set(strategies) >= set(CONTINUAL_STRATEGIES.names()) and strategies["der++"]["description"]
    learners = {row["name"] for row in listed["meta-learning"]["meta-learner"]}
    assert (
        learners == set(META_LEARNERS.names()) >= {"reptile", "maml", "fomaml", "anil", "meta-sgd", "protonets", "r2d2"}
    )


def test_every_meta_learner_is_a_subcommand_with_only_its_own_options(capsys):
    for entry in META_LEARNERS:
        with pytest.raises(SystemExit):
            main([entry.name, "--help"])
        text = capsys.readouterr().out
        own = {f.name for f in dataclasses.fields(entry.hyperparams or _NoOptions)}
        for field in own:
            assert f"--{field.replace('_', '-')}" in text
        others = {f.name for other in META_LEARNERS for f in dataclasses.fields(other.hyperparams or _NoOptions)}
        for field in others - own:
            assert f"--{field.replace('_', '-')} " not in text, (entry.name, field)


def test_a_conv_net_on_generated_vectors_is_refused_in_one_line(tmp_path, capsys):
    assert main(["continual", "--model", "conv4", "--no-progress", "--workdir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "model conv4 reads images [height, width, channels]; this data's examples have shape (64,)" in error


def test_der_plus_plus_runs_from_the_command(tmp_path):
    args = ["continual", "--strategy", "der++", "--buffer-size", "200", "--batch-size", "32", "--seeds", "2"]
    assert main([*args, "--no-progress", "--workdir", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["config"]["strategy_options"]["buffer_size"] == 200
    # DER++ keeps old classes alive: far above naive's 1/5 in class-IL.
    assert summary["final_average_accuracy"]["mean"] > 0.4


@pytest.fixture
def plugin_on_path(monkeypatch):
    """The example plugin's folder on the module path, as a user's PYTHONPATH would put it."""
    monkeypatch.syspath_prepend(str(EXAMPLES / "plugin"))
    yield
    for registry, name, module in (
        (CONTINUAL_STRATEGIES, "l2-anchor", "l2_anchor"),
        (META_LEARNERS, "cosine-protonets", "cosine_prototypes"),
        (MULTITASK_WEIGHTINGS, "geometric", "geometric_loss"),
    ):
        if name in registry:
            registry.unregister(name)
        sys.modules.pop(module, None)


def test_a_plugin_strategy_runs_through_the_command(plugin_on_path, tmp_path, capsys):
    assert "l2-anchor" not in CONTINUAL_STRATEGIES
    args = ["--plugin", "l2_anchor", "continual", "--strategy", "l2-anchor", "--l2-strength", "0.5"]
    assert main([*args, "--no-progress", "--workdir", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["config"]["strategy"] == "l2-anchor"
    assert summary["config"]["strategy_options"] == {"l2_strength": 0.5}
    assert main(["--plugin", "l2_anchor", "list"]) == 0
    assert "l2-anchor" in capsys.readouterr().out


def test_a_plugin_meta_learner_runs_through_the_command(plugin_on_path, omniglot_dir, tmp_path):
    assert "cosine-protonets" not in META_LEARNERS
    args = [
        "--plugin", "cosine_prototypes", "cosine-protonets", "--data-dir", str(omniglot_dir), "--temperature", "5",
        "--ways", "3", "--meta-batch", "2", "--meta-iters", "4", "--log-every", "2", "--eval-tasks", "8",
        "--eval-chunk", "4", "--no-progress", "--workdir", str(tmp_path),
    ]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["config"]["dataset"] == "omniglot"  # Its default: it needs classes.
    assert summary["config"]["algorithm_options"] == {"meta_lr": 1e-3, "temperature": 5.0}
    assert 0.0 <= summary["test_accuracy"] <= 1.0


def test_a_plugin_weighting_runs_through_the_command(plugin_on_path, tmp_path):
    args = ["--plugin", "geometric_loss", "multitask", "--weighting", "geometric", "--epochs", "2"]
    assert main([*args, "--no-progress", "--workdir", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["config"]["weighting"] == "geometric"
    assert all(np.isfinite(scores["mse"]) for scores in summary["tasks"].values())


def test_a_plugin_that_cannot_be_imported_is_one_line(capsys):
    assert main(["--plugin", "no_such_module_anywhere", "list"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("metajax: error: plugin 'no_such_module_anywhere' cannot be imported") and (
        error.count("\n") == 1
    )


def test_a_workdir_of_the_earlier_layout_is_refused_saying_why(tmp_path, capsys):
    (tmp_path / "run_config.json").write_text(json.dumps({"benchmark": "split-gaussian", "ewc_lambda": 100.0}))
    assert main(["continual", "--no-progress", "--workdir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "run format 1; this version reads format 2" in error and "use another --workdir" in error
