"""``cxr-trainer reproduce``: the shipped recipe matches the shipped models; a tiny recipe runs end to end."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from cxr_trainer.cli import main
from cxr_trainer.reproduce import (
    LOG_NAME,
    RecipeError,
    ReproduceError,
    ReproduceOptions,
    command_differences,
    load_recipe,
    parse_step,
    reproduce,
)

from cxrviewer.ml.manifest import load_manifest, sha256_file

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "models" / "recipe.toml"


def _manifest_command(folder: str) -> list[str]:
    doc = json.loads((REPO / "models" / folder / "manifest.json").read_text(encoding="utf-8"))
    cmd = shlex.split(doc["training"]["command"])
    assert cmd[0] == "cxr-trainer"
    return cmd[1:]


def test_shipped_recipe_dry_run_parses_every_step(capsys):
    recipe = load_recipe(SHIPPED)
    assert recipe.step_names() == [
        "lung-unet",
        "input-gate-start",
        "input-gate-continue",
        "input-gate",
        "classifier",
        "classifier-continue",
        "export",
        "reference-library",
    ]
    assert main(["reproduce", str(SHIPPED), "--dry-run", "--out", "runs/reproduce-dry"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split("]")[0][1:] for line in printed] == recipe.step_names()
    verbs = [parse_step(recipe, s, "runs/x").command for s in recipe.steps]
    assert verbs == [
        "train-seg",
        "train-gate",
        "train-gate",
        "train-gate",
        "train",
        "train",
        "export",
        "build-index",
    ]
    assert not (REPO / "runs" / "reproduce-dry").exists() or not any(
        (REPO / "runs" / "reproduce-dry").iterdir()
    )


@pytest.mark.parametrize(
    ("step", "folder"),
    [("lung-unet", "lung-unet"), ("input-gate", "input-gate"), ("classifier-continue", "cxr-classifier")],
)
def test_shipped_recipe_is_what_built_the_shipped_models(step, folder):
    """Every option but the output folders (--out, the gate's --init) and threads equals the manifest's
    recorded command."""
    recipe = load_recipe(SHIPPED)
    s = next(x for x in recipe.steps if x.name == step)
    ignore = ("out", "model", "threads", "quiet", "init")
    assert command_differences(recipe.argv(s, "runs/x"), _manifest_command(folder), ignore=ignore) == {}


def test_shipped_classifier_continues_the_same_run_with_the_same_model_settings():
    """The continuation resumes the first step's folder; only budget, threads and the split file differ."""
    recipe = load_recipe(SHIPPED)
    first, cont = (parse_step(recipe, s, "runs/x") for s in recipe.steps if s.name.startswith("classifier"))
    assert cont.resume and not first.resume and cont.out == first.out
    a, b = (recipe.argv(s, "runs/x") for s in recipe.steps if s.name.startswith("classifier"))
    assert set(command_differences(a, b)) == {"max_minutes", "resume", "split_csv"}
    doc = json.loads((REPO / "models/cxr-classifier/manifest.json").read_text(encoding="utf-8"))
    assert doc["training"]["notes"] == [f"split read from {cont.split_csv}"]
    assert doc["files"]["split"]["sha256"] == sha256_file(REPO / cont.split_csv)


def test_shipped_recipe_threads_match_recorded_hardware():
    """The lung U-Net and gate commands omit --threads; their manifests record the thread count used."""
    recipe = load_recipe(SHIPPED)
    for step in ("lung-unet", "input-gate"):
        doc = json.loads((REPO / "models" / step / "manifest.json").read_text(encoding="utf-8"))
        used = int(re.search(r"(\d+) torch threads", doc["training"]["hardware"]).group(1))
        args = parse_step(recipe, next(x for x in recipe.steps if x.name == step), "runs/x")
        assert args.threads == used


def test_shipped_recipe_library_step_matches_its_readme():
    recipe = load_recipe(SHIPPED)
    readme = (REPO / "models" / "reference-library" / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(cxr-trainer build-index.*?)```", readme, re.S).group(1)
    documented = shlex.split(block.replace("\\\n", " "))[1:]
    s = next(x for x in recipe.steps if x.name == "reference-library")
    assert command_differences(recipe.argv(s, "runs/x"), documented) == {}
    assert "model" not in command_differences(recipe.argv(s, "models"), documented, ignore=("out",))


def test_command_differences_sees_a_changed_option():
    a = ["train", "--data", "d", "--out", "o", "--lr", "1e-3"]
    assert command_differences(a, ["train", "--data", "d", "--out", "p", "--lr", "0.001"]) == {}
    assert command_differences(a, ["train", "--data", "d", "--out", "o", "--lr", "1e-4"]) == {
        "lr": (1e-3, 1e-4)
    }


def _write(tmp: Path, text: str) -> Path:
    p = tmp / "recipe.toml"
    p.write_text(text, encoding="utf-8")
    return p


TINY = """
[recipe]
name = "tiny"
[vars]
data = "{data}"
[[steps]]
name = "classifier"
command = "train --data {{data}} --out {{out}}/runs/clf --arch mobilenet_v3_small --size 48 --epochs 1 --batch-size 16 --lr 1e-3 --threads 1 --quiet --name tiny"
artifact = "runs/clf"
[[steps]]
name = "export"
command = "export --model {{out}}/runs/clf --out {{out}}/clf --quiet"
artifact = "clf"
install = "models/clf"
attach = {{ train_log = "{{out}}/runs/clf/train_log.json" }}
[[steps]]
name = "library"
command = "build-index --model {{out}}/clf --labels {{data}} --out {{out}}/lib/ref.cxrlib --threads 1 --overwrite"
artifact = "lib/ref.cxrlib"
install = "models/lib/ref.cxrlib"
"""


def test_tiny_recipe_runs_logs_and_installs(synthetic_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CXR_TRAINER_CACHE", str(tmp_path / "cache"))
    recipe = _write(tmp_path, TINY.format(data=synthetic_dataset))
    assert main(["reproduce", str(recipe), "--out", "build", "--install"]) == 0

    log = json.loads((tmp_path / "build" / LOG_NAME).read_text())
    assert log["status"] == "ok" and log["recipe_sha256"] == sha256_file(recipe)
    assert log["hardware"]["logical_cpus"] >= 1 and log["hardware"]["torch"]
    assert [s["name"] for s in log["steps"]] == ["classifier", "export", "library"]
    assert all(s["status"] == "ok" and s["wall_s"] > 0 for s in log["steps"])
    clf = log["steps"][0]["artifact"]
    assert clf["split"]["sha256"] == sha256_file(tmp_path / "build/runs/clf/split.csv")
    assert sum(clf["split"]["counts"].values()) > 50 and set(clf["split"]["counts"]) >= {
        "train",
        "val",
        "test",
    }

    # the model records its own command, not `cxr-trainer reproduce ...`
    m = load_manifest(tmp_path / "build" / "clf")  # verifies every hash, the attached train log included
    assert m.training["command"].startswith("cxr-trainer train --data")
    assert set(m.files) == {"weights", "split", "onnx", "train_log"}
    # --install copied the manifest's files, not the export log, and the library file
    installed = tmp_path / "models" / "clf"
    assert sorted(p.name for p in installed.iterdir()) == sorted(
        ["manifest.json", "model.safetensors", "split.csv", "model.onnx", "train_log.json"]
    )
    load_manifest(installed)
    assert (tmp_path / "models/lib/ref.cxrlib").read_bytes() == (
        tmp_path / "build/lib/ref.cxrlib"
    ).read_bytes()
    assert log["installed"] == {"export": "models/clf", "library": "models/lib/ref.cxrlib"}


def test_failing_step_stops_with_a_clear_error_and_a_log(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(
        _write(
            tmp_path,
            """
[[steps]]
name = "export"
command = "export --model {out}/missing --quiet"
artifact = "missing"
[[steps]]
name = "after"
command = "export --model {out}/missing --quiet"
artifact = "missing"
""",
        )
    )
    with pytest.raises(ReproduceError, match=r"step 'export' failed \(exit status 1\).*cxr-trainer export"):
        reproduce(recipe, ReproduceOptions(out=tmp_path / "b"))
    log = json.loads((tmp_path / "b" / LOG_NAME).read_text())
    assert log["status"] == "error" and log["failed_step"] == "export"
    assert [s["status"] for s in log["steps"]] == ["error", "pending"]


def test_a_step_that_writes_nothing_is_a_failure(tmp_path):
    recipe = load_recipe(
        _write(tmp_path, '[[steps]]\nname = "x"\ncommand = "export --model m"\nartifact = "never"\n')
    )
    with pytest.raises(ReproduceError, match="did not write"):
        reproduce(recipe, ReproduceOptions(out=tmp_path / "b"), run_verb=lambda argv: 0, echo=lambda s: None)


def test_recipe_problems_are_refused_before_anything_runs(tmp_path):
    ran = []
    ok = '[[steps]]\nname = "x"\ncommand = "export --model {out}/m"\nartifact = "m"\n'
    recipe = load_recipe(_write(tmp_path, ok))
    with pytest.raises(RecipeError, match="inside"):
        reproduce(
            recipe,
            ReproduceOptions(out=tmp_path / "models" / "x", models_dir=tmp_path / "models"),
            ran.append,
        )
    with pytest.raises(RecipeError, match="no step named"):
        reproduce(recipe, ReproduceOptions(out=tmp_path / "b", only=["y"]), ran.append)
    bad = load_recipe(_write(tmp_path, ok.replace("--model", "--no-such-option")))
    with pytest.raises(RecipeError, match="does not parse.*required: --model"):
        reproduce(bad, ReproduceOptions(out=tmp_path / "b"), ran.append)
    with pytest.raises(RecipeError, match="unknown placeholder"):
        unfilled = load_recipe(_write(tmp_path, ok.replace("{out}", "{nowhere}")))
        unfilled.argv(unfilled.steps[0], "o")
    with pytest.raises(RecipeError, match="lacks artifact"):
        load_recipe(_write(tmp_path, '[[steps]]\nname = "x"\ncommand = "export"\n'))
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.toml")
    assert ran == [] and not (tmp_path / "b").exists()
