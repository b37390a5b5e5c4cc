"""The evaluation report: PNG plots and one self-contained HTML page that links them."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from cxr_trainer.metrics import softmax


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    _plt().close(fig)
    return path.name


def plot_roc_pr(y_pos: np.ndarray, scores: np.ndarray, out: Path, metrics: dict) -> list[str]:
    from sklearn.metrics import precision_recall_curve, roc_curve

    plt = _plt()
    names = []
    if y_pos.any() and (~y_pos).any():
        fpr, tpr, _ = roc_curve(y_pos, scores)
        fig, ax = plt.subplots(figsize=(4.2, 4))
        ax.plot(fpr, tpr, lw=2, label=f"AUC {metrics['roc_auc']:.3f}")
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        for name, op in metrics["operating_points"].items():
            ax.plot(1 - op["specificity"], op["sensitivity"], "o", label=f"{name} ({op['threshold']:.2f})")
        ax.set(
            xlabel="1 − specificity", ylabel="sensitivity", title=f"ROC: {metrics['positive_class']} vs rest"
        )
        ax.legend(fontsize=7, loc="lower right")
        names.append(_save(fig, out / "roc.png"))
        prec, rec, _ = precision_recall_curve(y_pos, scores)
        fig, ax = plt.subplots(figsize=(4.2, 4))
        ax.plot(rec, prec, lw=2, label=f"PR AUC {metrics['pr_auc']:.3f}")
        ax.axhline(y_pos.mean(), color="k", ls=":", lw=1, label="prevalence")
        ax.set(xlabel="recall (sensitivity)", ylabel="precision", title="precision-recall", ylim=(0, 1.02))
        ax.legend(fontsize=7)
        names.append(_save(fig, out / "pr.png"))
    return names


def plot_thresholds(metrics: dict, out: Path) -> str:
    plt = _plt()
    t = metrics["threshold_table"]
    th = [r["threshold"] for r in t]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for key, col in (("sensitivity", "C0"), ("specificity", "C1")):
        v = np.array([np.nan if r[key] is None else r[key] for r in t], dtype=float)
        ci = [r[f"{key}_ci"] or (np.nan, np.nan) for r in t]
        ax.plot(th, v, "-o", ms=3, color=col, label=key)
        ax.fill_between(th, [c[0] for c in ci], [c[1] for c in ci], color=col, alpha=0.2)
    ax.set(
        xlabel=f"cut-off on P({metrics['positive_class']})",
        ylabel="rate",
        ylim=(0, 1.02),
        title="sensitivity / specificity (95% CI)",
    )
    ax.legend(fontsize=8)
    return _save(fig, out / "thresholds.png")


def plot_histograms(scores: np.ndarray, y: np.ndarray, labels: list[str], positive: str, out: Path) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    bins = np.linspace(0, 1, 26)
    for i, lab in enumerate(labels):
        if np.any(y == i):
            ax.hist(
                scores[y == i],
                bins=bins,
                alpha=0.5,
                label=f"true {lab} (n={int(np.sum(y == i))})",
                density=True,
            )
    ax.set(xlabel=f"P({positive})", ylabel="density", title="score histogram per true class")
    ax.legend(fontsize=7)
    return _save(fig, out / "score_histograms.png")


def plot_confusion(cm: list[list[int]], labels: list[str], out: Path) -> str:
    plt = _plt()
    m = np.array(cm)
    fig, ax = plt.subplots(figsize=(3.8, 3.4))
    ax.imshow(m, cmap="Blues")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(
                j,
                i,
                str(m[i, j]),
                ha="center",
                va="center",
                color="white" if m[i, j] > m.max() / 2 else "black",
            )
    ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set(xlabel="predicted (argmax)", ylabel="true", title="confusion matrix")
    return _save(fig, out / "confusion.png")


def plot_reliability(
    probs_raw: np.ndarray, probs_cal: np.ndarray, y: np.ndarray, metrics: dict, out: Path
) -> str:
    from cxr_trainer.metrics import expected_calibration_error

    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 4))
    for p, name in ((probs_raw, "before"), (probs_cal, f"T={metrics['calibration']['temperature']:.2f}")):
        ece, bins = expected_calibration_error(p, y)
        ax.plot(
            [b["confidence"] for b in bins],
            [b["accuracy"] for b in bins],
            "-o",
            ms=3,
            label=f"{name} (ECE {ece:.3f})",
        )
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(
        xlabel="confidence (top class)",
        ylabel="accuracy",
        title="reliability diagram",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend(fontsize=8)
    return _save(fig, out / "reliability.png")


def plot_tsne(
    emb: np.ndarray,
    y: np.ndarray,
    sources: list[str],
    labels: list[str],
    out: Path,
    max_points: int = 800,
    seed: int = 0,
) -> str | None:
    if len(emb) < 5:
        return None
    from sklearn.manifold import TSNE

    plt = _plt()
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(emb), size=min(max_points, len(emb)), replace=False)
    e = emb[idx]
    e = (e - e.mean(0)) / (e.std(0) + 1e-6)
    xy = TSNE(
        n_components=2, perplexity=float(min(30, max(1, (len(idx) - 1) // 3))), random_state=seed, init="pca"
    ).fit_transform(e)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for i, lab in enumerate(labels):
        m = y[idx] == i
        axes[0].scatter(xy[m, 0], xy[m, 1], s=6, label=lab)
    src = np.array(sources)[idx]
    for s in sorted(set(src)):
        m = src == s
        axes[1].scatter(xy[m, 0], xy[m, 1], s=6, label=s)
    axes[0].set_title("t-SNE of embeddings: true class")
    axes[1].set_title("same points: source")
    for a in axes:
        a.legend(fontsize=7, markerscale=2)
        a.set_xticks([])
        a.set_yticks([])
    return _save(fig, out / "tsne.png")


def _fmt(v: Any, nd: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    if isinstance(v, list | tuple) and len(v) == 2 and all(isinstance(x, float | int) for x in v):
        return f"[{v[0]:.{nd}f}, {v[1]:.{nd}f}]"
    return html.escape(str(v))


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    h = "".join(f"<th>{html.escape(x)}</th>" for x in headers)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def _ablation_section(block: dict | None) -> str:
    from cxr_trainer.ablation import ablation_html

    return ablation_html(block)


def write_report(
    out: Path,
    metrics: dict,
    data,
    labels: list[str],
    positive: int,
    temperature: float,
    tsne: bool = True,
    extra_images: list[str] | None = None,
) -> Path:
    """Write the PNG plots and ``report.html`` into ``out``; returns the HTML path."""
    out.mkdir(parents=True, exist_ok=True)
    probs = softmax(data.logits, temperature)
    raw = softmax(data.logits, 1.0)
    pos_name = labels[positive]
    y_pos = data.y == positive
    imgs = plot_roc_pr(y_pos, probs[:, positive], out, metrics)
    imgs.append(plot_thresholds(metrics, out))
    imgs.append(plot_histograms(probs[:, positive], data.y, labels, pos_name, out))
    imgs.append(plot_confusion(metrics["confusion_argmax"], labels, out))
    imgs.append(plot_reliability(raw, probs, data.y, metrics, out))
    if tsne:
        t = plot_tsne(data.embeddings, data.y, data.sources, labels, out)
        if t:
            imgs.append(t)
    imgs += extra_images or []
    metrics["plots"] = imgs
    m = metrics
    ops = m["operating_points"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>cxr-trainer evaluation</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px;text-align:right}th{background:#eee}"
        "img{max-width:48%;margin:4px;border:1px solid #ddd}.warn{background:#fff3cd;padding:.5em}</style></head><body>",
        "<h1>Evaluation report</h1>",
        "<p class='warn'>Research use only — not for diagnosis. Public CXR sets are source-confounded: read the "
        "per-source table before trusting any pooled figure.</p>",
        _table(
            [
                "model",
                "labels file",
                "images",
                "excluded labels",
                "unreadable",
                "ms/image (batch)",
                "ms/image (single)",
            ],
            [
                [
                    m["model"]["id"],
                    m["data"]["labels_csv"],
                    m["n"],
                    str(m["data"]["excluded"] or "none"),
                    len(m["data"]["failed"]),
                    m["inference"]["ms_per_image_batched"],
                    m["inference"]["ms_per_image_single"],
                ]
            ],
        ),
        f"<h2>Summary (positive class: {html.escape(pos_name)})</h2>",
        _table(
            [
                "accuracy",
                "macro F1",
                "ROC AUC",
                "95% CI",
                "PR AUC",
                "ECE (T)",
                "ECE before",
                "k=4 neighbour vote",
            ],
            [
                [
                    m["accuracy"],
                    m["macro_f1"],
                    m["roc_auc"],
                    m["roc_auc_ci"],
                    m["pr_auc"],
                    m["calibration"]["ece"],
                    m["calibration"]["ece_before"],
                    m.get("neighbour_vote_accuracy_k4"),
                ]
            ],
        ),
        _ablation_section(m.get("ablation")),
        "<h2>Operating points (cut-offs chosen on the validation split)</h2>",
        _table(
            ["name", "cut-off", "sensitivity", "95% CI", "specificity", "95% CI", "TP", "FN", "TN", "FP"],
            [
                [
                    n,
                    o["threshold"],
                    o["sensitivity"],
                    o["sensitivity_ci"],
                    o["specificity"],
                    o["specificity_ci"],
                    o["tp"],
                    o["fn"],
                    o["tn"],
                    o["fp"],
                ]
                for n, o in ops.items()
            ],
        ),
        f"<p>Confusion at the '{html.escape(m['confusion_at_cutoff']['operating_point'])}' cut-off "
        f"{_fmt(m['confusion_at_cutoff']['threshold'], 2)}: TP {m['confusion_at_cutoff']['tp']}, FN {m['confusion_at_cutoff']['fn']}, "
        f"TN {m['confusion_at_cutoff']['tn']}, FP {m['confusion_at_cutoff']['fp']}. CI: p ± 1.96·sqrt(p(1−p)/n).</p>",
        "<h2>Per source</h2>",
        _table(
            [
                "source",
                "n",
                "classes",
                "accuracy",
                "ROC AUC",
                "sensitivity",
                "95% CI",
                "specificity",
                "95% CI",
            ],
            [
                [
                    s,
                    e["n"],
                    ", ".join(f"{k} {v}" for k, v in e["class_counts"].items() if v),
                    e["accuracy"],
                    e.get("roc_auc"),
                    e["sensitivity"],
                    e["sensitivity_ci"],
                    e["specificity"],
                    e["specificity_ci"],
                ]
                for s, e in m["per_source"].items()
            ],
        ),
        "<h2>Per class (argmax)</h2>",
        _table(
            ["class", "precision", "recall", "F1", "support", "AUC one-vs-rest"],
            [
                [c, v["precision"], v["recall"], v["f1"], v["support"], m["per_class_auc_ovr"].get(c)]
                for c, v in m["per_class"].items()
            ],
        ),
        "<h2>Plots</h2>",
        "".join(
            f"<a href='{html.escape(i)}'><img src='{html.escape(i)}' alt='{html.escape(i)}'></a>"
            for i in imgs
        ),
        "<h2>Threshold table</h2>",
        _table(
            ["cut-off", "sensitivity", "95% CI", "specificity", "95% CI", "TP", "FN", "TN", "FP"],
            [
                [
                    r["threshold"],
                    r["sensitivity"],
                    r["sensitivity_ci"],
                    r["specificity"],
                    r["specificity_ci"],
                    r["tp"],
                    r["fn"],
                    r["tn"],
                    r["fp"],
                ]
                for r in m["threshold_table"]
            ],
        ),
        f"<p>Metric keys are documented in the README (section Training). Generated by {html.escape(m['generated_by'])}.</p>",
        "</body></html>",
    ]
    path = out / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
