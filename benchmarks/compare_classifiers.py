"""Accuracy side of the architecture comparison: trained classifier folders on one split's val and test images.

For each ``--model`` (and, with ``--ensemble``, the mean of their calibrated probabilities) it prints and
writes (``--json``) the figures of the model card's comparison table:

- parameters, input size, epochs reached and training minutes (from the manifest);
- validation COVID-vs-rest ROC AUC and macro-F1 (what a choice between models may look at);
- test COVID-vs-rest ROC AUC with a stratified-bootstrap 95 % CI, 3-class macro-F1, ECE after the model's
  own temperature (fitted on validation by the trainer);
- test sensitivity / specificity at the cut-off chosen on VALIDATION as the lowest with specificity ≥ 0.90
  (honest), and the sensitivity the TEST ROC reaches at specificity ≥ 0.90 (the target's definition;
  optimistic because the cut-off is read off the test split);
- per source on test (at the validation cut-off): COVID sensitivity / specificity.

Every model is scored on the same images: the ``val`` and ``test`` rows of ``--split`` (default the shipped
classifier's split). Latency is measured separately by ``bench_classifier_latency.py``.

    .venv/bin/python benchmarks/compare_classifiers.py --model models/cxr-classifier \
        --model runs/cmp/npc-resnet18-128 --json runs/cmp/compare.json [--ensemble]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "trainer"))

SPEC_FLOOR = 0.90
GRID = np.round(np.arange(0.005, 1.0, 0.005), 3)


def scores(model_dir: Path, labels: Path, split: Path, threads: int) -> dict:
    """Calibrated probabilities of ``model_dir`` on the val and test rows of ``split``."""
    from cxr_trainer.evaluate_model import _subset_csv
    from cxr_trainer.evaluation import run_model_on_csv
    from cxr_trainer.metrics import softmax

    out = {}
    for subset in ("val", "test"):
        with tempfile.TemporaryDirectory(prefix="cxr-cmp-") as tmp:
            csv_path = _subset_csv(labels, str(split), subset, Path(tmp))
            data, manifest, _model, _task = run_model_on_csv(
                model_dir, csv_path, None, False, threads=threads
            )
        t = float((manifest.calibration or {}).get("temperature", 1.0))
        out[subset] = {
            "keys": data.keys,
            "sources": np.array(data.sources),
            "y": data.y,
            "probs": softmax(data.logits, t),
        }
    out["manifest"] = manifest
    return out


def _sens_spec(p: np.ndarray, pos: np.ndarray, t: float) -> tuple[float, float]:
    hit = p >= t
    sens = float(hit[pos].mean()) if pos.any() else float("nan")
    spec = float((~hit[~pos]).mean()) if (~pos).any() else float("nan")
    return sens, spec


def _cutoff_for_spec(p: np.ndarray, pos: np.ndarray, floor: float) -> float:
    """The lowest grid cut-off whose specificity is ≥ ``floor`` (the most sensitive one that qualifies)."""
    for t in GRID:
        if _sens_spec(p, pos, t)[1] >= floor:
            return float(t)
    return float(GRID[-1])


def figures(val: dict, test: dict, positive: int, n_boot: int) -> dict:
    """The comparison-table figures from calibrated val/test probabilities."""
    from cxr_trainer.metrics import expected_calibration_error, per_class_prf, roc_auc, roc_auc_ci

    def macro_f1(d):
        k = d["probs"].shape[1]
        prf = per_class_prf(d["y"], d["probs"].argmax(1), [str(i) for i in range(k)])
        return float(np.mean([v["f1"] for v in prf.values()]))

    vpos, tpos = val["y"] == positive, test["y"] == positive
    vp, tp = val["probs"][:, positive], test["probs"][:, positive]
    auc, ci = roc_auc_ci(tpos, tp, n_boot=n_boot)
    cut = _cutoff_for_spec(vp, vpos, SPEC_FLOOR)
    sens, spec = _sens_spec(tp, tpos, cut)
    oracle = _cutoff_for_spec(tp, tpos, SPEC_FLOOR)
    per_source = {}
    for s in sorted(set(test["sources"])):
        m = test["sources"] == s
        ss, sp = _sens_spec(tp[m], tpos[m], cut)
        per_source[s] = {
            "n": int(m.sum()),
            "n_covid": int(tpos[m].sum()),
            "sensitivity": ss,
            "specificity": sp,
            "accuracy": float((test["probs"][m].argmax(1) == test["y"][m]).mean()),
        }
    return {
        "val_auc": roc_auc(vpos, vp),
        "val_macro_f1": macro_f1(val),
        "test_auc": auc,
        "test_auc_ci": list(ci) if ci else None,
        "test_macro_f1": macro_f1(test),
        "test_accuracy": float((test["probs"].argmax(1) == test["y"]).mean()),
        "test_ece": expected_calibration_error(test["probs"], test["y"])[0],
        "cutoff_from_val": cut,
        "test_sens_at_val_cutoff": sens,
        "test_spec_at_val_cutoff": spec,
        "test_sens_at_spec90_test_roc": _sens_spec(tp, tpos, oracle)[0],
        "per_source": per_source,
    }


def model_info(manifest, model_dir: Path) -> dict:
    """Parameters, input size and training length from a model folder."""
    from safetensors import safe_open

    with safe_open(str(model_dir / manifest.files["weights"].path), "pt") as fh:
        params = sum(int(np.prod(fh.get_slice(k).get_shape())) for k in fh.keys() if "running_" not in k)  # noqa: SIM118
    tr = manifest.training or {}
    hist = tr.get("history") or []
    return {
        "arch": manifest.architecture.get("name"),
        "size": manifest.preprocess_spec.size,
        "params_m": params / 1e6,
        "epochs": tr.get("epochs_run", len(hist)),
        "train_minutes": round(sum(h.get("seconds", 0) for h in hist) / 60, 1),
        "run_minutes": round(float(tr.get("duration_s", 0)) / 60, 1),
        "weights_mb": manifest.files["weights"].bytes / 1e6,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", type=Path, required=True)
    p.add_argument("--labels", type=Path, default=REPO.parent / "shared" / "data" / "cxr" / "labels.csv")
    p.add_argument("--split", type=Path, default=REPO / "models" / "cxr-classifier" / "split.csv")
    p.add_argument("--ensemble", action="store_true", help="also score the mean of the models' probabilities")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path)
    args = p.parse_args()

    rows, runs = {}, {}
    for m in args.model:
        r = scores(m, args.labels, args.split, args.threads)
        pos = list(r["manifest"].labels).index("covid")
        runs[str(m)] = r
        rows[str(m)] = {**model_info(r["manifest"], m), **figures(r["val"], r["test"], pos, args.bootstrap)}
    if args.ensemble and len(runs) > 1:
        first = next(iter(runs.values()))
        for sub in ("val", "test"):
            for r in runs.values():
                assert r[sub]["keys"] == first[sub]["keys"], "models scored different images"
        mean = {
            sub: {**first[sub], "probs": np.mean([r[sub]["probs"] for r in runs.values()], axis=0)}
            for sub in ("val", "test")
        }
        rows["ensemble(" + "+".join(Path(k).name for k in runs) + ")"] = figures(
            mean["val"], mean["test"], 2, args.bootstrap
        )
    for name, r in rows.items():
        ci = r["test_auc_ci"] or [float("nan")] * 2
        src = r["per_source"]
        print(
            f"{name}\n  val AUC {r['val_auc']:.4f} F1 {r['val_macro_f1']:.3f} | test AUC {r['test_auc']:.4f} "
            f"[{ci[0]:.3f}, {ci[1]:.3f}]  macro-F1 {r['test_macro_f1']:.3f}  ECE {r['test_ece']:.3f}  "
            f"cut-off {r['cutoff_from_val']:.3f} (val spec>=0.90): test sens {r['test_sens_at_val_cutoff']:.3f} "
            f"spec {r['test_spec_at_val_cutoff']:.3f}; test-ROC sens@spec>=0.90 "
            f"{r['test_sens_at_spec90_test_roc']:.3f}\n  "
            + "  ".join(
                f"{s}: n={v['n']} sens {v['sensitivity']:.2f} spec {v['specificity']:.2f}"
                for s, v in src.items()
            )
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=float) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
