"""Rebuild every shipped model from one recipe file (``models/recipe.toml``), in order, with a log.

A recipe is a TOML file::

    [recipe]
    name = "..."
    [vars]                      # placeholders usable in commands, besides {out}
    data = "../shared/data/cxr"
    [[steps]]
    name = "classifier"
    command = "train --data {data} --out {out}/runs/cxr-classifier ..."   # a cxr-trainer command line
    artifact = "runs/cxr-classifier"      # what the step makes, relative to --out
    install = "models/cxr-classifier"     # optional: where --install copies the artifact
    attach = { train_log = "{out}/runs/cxr-classifier/train_log.json" }   # optional, see RecipeStep

Steps run through the real ``cxr-trainer`` parser and verbs (:func:`cxr_trainer.cli.main`), so a recipe
command is exactly what a person would type. Nothing is written outside ``--out`` unless ``install`` is
asked for, and then only after every selected step succeeded.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

LOG_NAME = "reproduce_log.json"


class RecipeError(ValueError):
    """The recipe file is missing, malformed, or asks for something impossible."""


class ReproduceError(RuntimeError):
    """A step failed; the message names the step and its command, the log has the details."""


@dataclass
class RecipeStep:
    """One ``cxr-trainer`` command of a recipe.

    ``attach`` maps a manifest role to a file that is copied into the artifact folder after the command and
    recorded (size + SHA-256) in the artifact's ``manifest.json`` under that role.
    """

    name: str
    command: str
    artifact: str
    install: str | None = None
    attach: dict[str, str] = field(default_factory=dict)


@dataclass
class Recipe:
    """A parsed recipe file."""

    path: Path
    name: str
    vars: dict[str, str]
    steps: list[RecipeStep]

    def step_names(self) -> list[str]:
        return [s.name for s in self.steps]

    def argv(self, step: RecipeStep, out: str | Path) -> list[str]:
        """The step's command as an argument list (without the leading ``cxr-trainer``)."""
        return shlex.split(self.expand(step.command, out))

    def expand(self, text: str, out: str | Path) -> str:
        """Fill ``{out}`` and the ``[vars]`` placeholders into ``text``."""
        values = {**self.vars, "out": str(out)}
        try:
            return text.format(**values)
        except KeyError as exc:
            raise RecipeError(f"{self.path}: unknown placeholder {{{exc.args[0]}}} in {text!r}") from exc


def load_recipe(path: str | Path) -> Recipe:
    """Read and check a recipe TOML file; raise :class:`RecipeError` with a readable message if it is bad."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe {path} not found")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path} is not valid TOML: {exc}") from exc
    raw_steps = doc.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise RecipeError(f"{path}: no [[steps]]")
    steps = []
    for i, s in enumerate(raw_steps, 1):
        missing = [k for k in ("name", "command", "artifact") if not s.get(k)]
        if missing:
            raise RecipeError(f"{path}: step {i} lacks {', '.join(missing)}")
        unknown = set(s) - set(RecipeStep.__dataclass_fields__)
        if unknown:
            raise RecipeError(f"{path}: step {s['name']!r} has unknown keys {sorted(unknown)}")
        steps.append(RecipeStep(**s))
    names = [s.name for s in steps]
    dupes = sorted(n for n, c in Counter(names).items() if c > 1)
    if dupes:
        raise RecipeError(f"{path}: step names must be unique, repeated: {dupes}")
    variables = {k: str(v) for k, v in (doc.get("vars") or {}).items()}
    if "out" in variables:
        raise RecipeError(f"{path}: 'out' is set by --out, not by [vars]")
    return Recipe(path, str((doc.get("recipe") or {}).get("name", path.stem)), variables, steps)


def select_steps(recipe: Recipe, only: Sequence[str] | None) -> list[RecipeStep]:
    """The steps to run, in recipe order; ``only`` names a subset (unknown names are an error)."""
    if not only:
        return list(recipe.steps)
    unknown = [n for n in only if n not in recipe.step_names()]
    if unknown:
        raise RecipeError(
            f"no step named {unknown} in {recipe.path}; steps: {', '.join(recipe.step_names())}"
        )
    return [s for s in recipe.steps if s.name in set(only)]


def parse_step(recipe: Recipe, step: RecipeStep, out: str | Path):
    """Parse a step's command with the real ``cxr-trainer`` parser; :class:`RecipeError` if it does not parse."""
    from cxr_trainer.cli import build_parser

    argv = recipe.argv(step, out)
    try:
        args = _parse_quietly(build_parser(), argv)
    except RecipeError as exc:
        raise RecipeError(
            f"step {step.name!r}: `cxr-trainer {shlex.join(argv)}` does not parse: {exc}"
        ) from exc
    if not getattr(args, "func", None):
        raise RecipeError(f"step {step.name!r}: `cxr-trainer {shlex.join(argv)}` names no verb")
    return args


def _parse_quietly(parser, argv: list[str]):
    """``parser.parse_args(argv)`` with argparse's message captured into a :class:`RecipeError`."""
    import contextlib
    import io

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return parser.parse_args(argv)
    except SystemExit as exc:
        raise RecipeError(
            err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else str(exc)
        ) from exc


def command_differences(
    argv_a: Sequence[str], argv_b: Sequence[str], ignore: Sequence[str] = ("out", "model", "threads", "quiet")
) -> dict[str, tuple[Any, Any]]:
    """Options on which two ``cxr-trainer`` command lines differ once parsed by the real parser.

    Both are parsed (defaults filled in), so ``--lr 1e-3`` equals ``--lr 0.001`` and a left-out default
    equals the default written out; ``ignore`` names destinations (output paths, threads) not compared.
    """
    from cxr_trainer.cli import build_parser

    a = vars(_parse_quietly(build_parser(), list(argv_a)))
    b = vars(_parse_quietly(build_parser(), list(argv_b)))
    keys = (set(a) | set(b)) - set(ignore) - {"func"}
    return {k: (a.get(k), b.get(k)) for k in sorted(keys) if a.get(k) != b.get(k)}


def hardware() -> dict[str, Any]:
    """What the steps ran on (CPU, cores, torch and its threads, GPU if any)."""
    info: dict[str, Any] = {
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads_default"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:  # pragma: no cover - torch is a trainer dependency
        info["torch"] = None
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _git_commit() -> str | None:
    try:
        r = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() or None


def split_summary(split_csv: Path) -> dict[str, Any]:
    """SHA-256 and per-split image counts of a ``split.csv`` (columns include ``split``)."""
    from cxrviewer.ml.manifest import sha256_file

    with open(split_csv, newline="", encoding="utf-8") as fh:
        counts = Counter(row.get("split", "") for row in csv.DictReader(fh))
    return {"path": str(split_csv), "sha256": sha256_file(split_csv), "counts": dict(sorted(counts.items()))}


def artifact_summary(path: Path, shipped: Path | None) -> dict[str, Any]:
    """Files (with SHA-256) of an artifact, its data split, and whether the split equals the shipped one."""
    from cxrviewer.ml.manifest import sha256_file

    out: dict[str, Any] = {"path": str(path)}
    if path.is_file():
        out["files"] = {path.name: {"sha256": sha256_file(path), "bytes": path.stat().st_size}}
        return out
    manifest = path / "manifest.json"
    if manifest.is_file():
        doc = json.loads(manifest.read_text(encoding="utf-8"))
        out["files"] = doc.get("files", {})
        out["manifest_sha256"] = sha256_file(manifest)
    if (path / "split.csv").is_file():
        out["split"] = split_summary(path / "split.csv")
        if shipped is not None and (shipped / "split.csv").is_file():
            out["split"]["same_as_shipped"] = out["split"]["sha256"] == sha256_file(shipped / "split.csv")
    return out


def attach_files(recipe: Recipe, step: RecipeStep, out: Path) -> dict[str, str]:
    """Copy ``step.attach`` files into the artifact folder and record them in its manifest."""
    if not step.attach:
        return {}
    from cxrviewer.ml.manifest import load_manifest, record_file, write_manifest

    folder = out / step.artifact
    manifest = load_manifest(folder, verify=False)
    done = {}
    for role, src_t in step.attach.items():
        src = Path(recipe.expand(src_t, out))
        if not src.is_file():
            raise ReproduceError(f"step {step.name!r}: file to attach as {role!r} not found: {src}")
        if src.resolve() != (folder / src.name).resolve():
            shutil.copy2(src, folder / src.name)
        record_file(folder, manifest, role, src.name)
        done[role] = src.name
    write_manifest(folder, manifest)
    return done


def _run_verb(argv: list[str]) -> int:
    """Run one cxr-trainer command in this process; SystemExit from a verb becomes its exit status.

    ``sys.argv`` is set to the step's own command line while it runs, because verbs record it (the manifest's
    ``training.command``).
    """
    from cxr_trainer.cli import main

    saved = sys.argv
    sys.argv = ["cxr-trainer", *argv]
    try:
        return int(main(argv) or 0)
    except SystemExit as exc:
        if isinstance(exc.code, int):
            return exc.code
        print(exc.code, file=sys.stderr)
        return 1
    finally:
        sys.argv = saved


@dataclass
class ReproduceOptions:
    """How to run a recipe."""

    out: Path = Path("runs/reproduce")
    only: Sequence[str] | None = None
    dry_run: bool = False
    install: bool = False
    models_dir: Path = Path("models")


def _check_out_dir(out: Path, models_dir: Path) -> None:
    o, m = out.resolve(), models_dir.resolve()
    if o == m or m in o.parents:
        raise RecipeError(
            f"--out {out} is inside {models_dir}/: build elsewhere and use --install to replace the shipped models"
        )


def reproduce(
    recipe: Recipe,
    opts: ReproduceOptions,
    run_verb: Callable[[list[str]], int] = _run_verb,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the recipe's (selected) steps in order; write and return the log.

    Raises :class:`RecipeError` before running anything if a command does not parse or ``--out`` is inside
    the models folder, and :class:`ReproduceError` when a step fails (the log is written first).
    """
    steps = select_steps(recipe, opts.only)
    out = Path(opts.out)
    _check_out_dir(out, opts.models_dir)
    for step in steps:  # every command must parse before anything runs
        parse_step(recipe, step, out)
    if opts.dry_run:
        for step in steps:
            echo(f"[{step.name}] cxr-trainer {shlex.join(recipe.argv(step, out))}")
        return {"dry_run": True, "steps": [s.name for s in steps]}

    from cxrviewer.ml.manifest import sha256_file

    out.mkdir(parents=True, exist_ok=True)
    log: dict[str, Any] = {
        "recipe": str(recipe.path),
        "recipe_sha256": sha256_file(recipe.path),
        "recipe_name": recipe.name,
        "git_commit": _git_commit(),
        "out": str(out),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "hardware": hardware(),
        "status": "running",
        "steps": [
            {"name": s.name, "command": "cxr-trainer " + shlex.join(recipe.argv(s, out)), "status": "pending"}
            for s in steps
        ],
    }
    log_path = out / LOG_NAME

    def write_log() -> None:
        log_path.write_text(json.dumps(log, indent=2) + "\n", encoding="utf-8")

    write_log()
    t_all = time.time()
    for step, entry in zip(steps, log["steps"], strict=True):
        echo(f"[{step.name}] {entry['command']}")
        entry["started_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        t0 = time.time()
        try:
            rc = run_verb(recipe.argv(step, out))
            error = None if rc == 0 else f"exit status {rc}"
        except Exception as exc:  # a verb crashed: record it, then stop
            rc, error = 1, f"{type(exc).__name__}: {exc}"
        artifact = out / step.artifact
        if error is None and not artifact.exists():
            error = f"the command succeeded but did not write {artifact}"
        if error is None:
            try:
                entry["attached"] = attach_files(recipe, step, out)
            except Exception as exc:
                error = f"attaching files failed: {exc}"
        entry["wall_s"] = round(time.time() - t0, 2)
        if error is not None:
            entry.update(status="error", error=error)
            log.update(status="error", failed_step=step.name, wall_s=round(time.time() - t_all, 2))
            write_log()
            raise ReproduceError(
                f"step {step.name!r} failed ({error}) after {entry['wall_s']:.0f} s: {entry['command']}\n"
                f"log: {log_path}"
            )
        shipped = Path(step.install) if step.install else None
        entry.update(status="ok", artifact=artifact_summary(artifact, shipped))
        write_log()
        echo(f"[{step.name}] done in {entry['wall_s']:.1f} s")
    log.update(status="ok", wall_s=round(time.time() - t_all, 2))
    if opts.install:
        log["installed"] = install_artifacts(steps, out, echo)
    write_log()
    return log


def install_artifacts(
    steps: Sequence[RecipeStep], out: Path, echo: Callable[[str], None] = print
) -> dict[str, str]:
    """Copy each step's artifact to its ``install`` path, replacing what is there."""
    done = {}
    for step in steps:
        if not step.install:
            continue
        src, dst = out / step.artifact, Path(step.install)
        if src.is_dir():  # a model folder: its manifest and the files it lists (no logs, checkpoints ...)
            from cxrviewer.ml.manifest import MANIFEST_NAME, load_manifest

            manifest = load_manifest(src, verify=True)
            if dst.exists():
                shutil.rmtree(dst)
            dst.mkdir(parents=True)
            for f in [MANIFEST_NAME, *(m.path for m in manifest.files.values())]:
                (dst / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src / f, dst / f)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        done[step.name] = str(dst)
        echo(f"installed {src} -> {dst}")
    return done
