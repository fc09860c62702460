"""The report's plots: matplotlib figures (object API, no pyplot, no display) saved as SVG and
embedded as `data:` URIs, so the page needs nothing but itself. matplotlib is imported here,
when a plot is made, never at CLI start-up; without it the report has its tables only."""

from __future__ import annotations

import base64
import io
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from mlpipe_flow.report.gather import PhaseView

AGENT, PASSED, FAILED, NEUTRAL, ACCENT = "#5c6bc0", "#2e7d32", "#c62828", "#9e9e9e", "#ef6c00"
# `text.parse_math` off: labels are feature names and messages from agent-made files, where a
# `$...$` would otherwise be parsed as mathtext (and can fail to parse)
RC: dict[str, Any] = {"svg.fonttype": "none", "svg.hashsalt": "mlpipe-report", "font.size": 9,
      "axes.spines.top": False, "axes.spines.right": False, "text.parse_math": False}


def available() -> str | None:
    """None when plots can be made, else why not (one line for the page)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "plots need matplotlib: pip install 'mlpipe-flow[ml]'"
    return None


@contextmanager
def _figure(width: float, height: float) -> Iterator[Any]:
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(RC):  # type: ignore[arg-type]
        yield Figure(figsize=(width, height), layout="constrained")


def _uri(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = re.sub(rb"^<\?xml[^>]*>\s*(<!DOCTYPE[^>]*>\s*)?", b"", buf.getvalue())
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def timeline(phases: list[PhaseView]) -> str | None:
    """Each attempt of each phase, agent time then gate time, one after another."""
    rows = [p for p in phases if p.history]
    if not rows:
        return None
    with _figure(9, 0.5 * len(phases) + 1.1) as fig:
        ax = fig.add_subplot()
        t = 0.0
        total = sum(a.agent_s + a.gate_s for p in rows for a in p.history) or 1.0
        for y, p in enumerate(phases):
            for a in p.history:
                ax.barh(y, a.agent_s, left=t, height=0.6, color=AGENT)
                t += a.agent_s
                colour = PASSED if a.gate == "passed" else FAILED if a.gate == "failed" else NEUTRAL
                ax.barh(y, max(a.gate_s, total / 400), left=t, height=0.6, color=colour)
                t += a.gate_s
                if len(p.history) > 1:
                    ax.text(t, y - 0.38, f"#{a.n}", fontsize=7, ha="right", va="bottom")
            label = f"{p.progress_end}%" if p.status == "passed" else p.status
            ax.text(t + total / 100, y, label, va="center", fontsize=8,
                    color=PASSED if p.status == "passed" else FAILED if p.history else NEUTRAL)
        ax.set_yticks(range(len(phases)), [f"{p.id}  {p.name}" for p in phases])
        ax.invert_yaxis()
        ax.set_xlim(0, t * 1.08 or 1)
        ax.set_xlabel("seconds: agent, then gate, for each attempt in turn")
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(color=AGENT, label="agent"), Patch(color=PASSED, label="gate passed"),
                           Patch(color=FAILED, label="gate failed")],
                  loc="lower left", bbox_to_anchor=(0, 1), ncols=3, fontsize=8, frameon=False)
        return _uri(fig)


def score(ev: dict[str, Any]) -> str | None:
    """The model's test score against the gate's own baseline and the score needed to pass."""
    m, b = ev.get("score"), ev.get("baseline")
    if not isinstance(m, int | float) or not isinstance(b, int | float):
        return None
    higher = ev.get("higher_is_better", True) is not False
    need_margin = float(ev.get("min_margin") or 0.0)
    needed = b + need_margin * (1 - b) if higher else b * (1 - need_margin)
    metric = str(ev.get("metric", "score"))
    with _figure(6.5, 1.9) as fig:
        ax = fig.add_subplot()
        labels = ["gate's baseline", "model (test split)"]
        ax.barh([0, 1], [b, m], height=0.55, color=[NEUTRAL, PASSED if _beats(m, needed, higher) else FAILED])
        for y, v in ((0, b), (1, m)):
            ax.text(v, y, f" {v:.4f}", va="center", fontsize=9)
        ax.axvline(needed, color=ACCENT, linestyle="--", linewidth=1.2)
        ax.text(needed, 1.42, f" needed {needed:.4f}", color=ACCENT, fontsize=8, ha="left",
                va="bottom")
        ax.set_yticks([0, 1], labels)
        top = max(m, b, needed)
        ax.set_xlim(0, 1.0 if higher and top <= 1 else top * 1.2)
        ax.set_ylim(-0.5, 1.75)
        ax.set_xlabel(f"{metric} ({'higher' if higher else 'lower'} is better)")
        return _uri(fig)


def _beats(m: float, needed: float, higher: bool) -> bool:
    return m > needed if higher else m < needed


def cv_spread(ev: dict[str, Any]) -> str | None:
    """The gate's own cross-validation fold scores (one column per repeat), mean and std, beside
    the folds the agent reported."""
    folds = ev.get("gate_fold_scores")
    if not isinstance(folds, list) or not folds:
        return None
    repeats = [[float(x) for x in r if isinstance(x, int | float)] for r in folds if isinstance(r, list)]
    repeats = [r for r in repeats if r]
    if not repeats:
        return None
    reported = [float(x) for x in ev.get("reported_cv_scores") or [] if isinstance(x, int | float)]
    mean = float(ev.get("gate_cv_mean") or sum(map(sum, repeats)) / sum(map(len, repeats)))
    std = float(ev.get("gate_cv_std") or 0.0)
    with _figure(6.5, 2.4) as fig:
        ax = fig.add_subplot()
        ax.axhspan(mean - std, mean + std, color=AGENT, alpha=0.12, linewidth=0)
        ax.axhline(mean, color=AGENT, linewidth=1)
        for i, r in enumerate(repeats):
            xs = [i + (j - (len(r) - 1) / 2) * 0.08 for j in range(len(r))]
            ax.plot(xs, r, "o", color=AGENT, markersize=4)
        cols = [f"gate repeat {i + 1}" for i in range(len(repeats))]
        if reported:
            xs = [len(repeats) + (j - (len(reported) - 1) / 2) * 0.08 for j in range(len(reported))]
            ax.plot(xs, reported, "o", markerfacecolor="none", color=NEUTRAL, markersize=4)
            cols.append("reported by the agent")
        ax.set_xticks(range(len(cols)), cols)
        ax.set_xlim(-0.6, len(cols) - 0.4)
        ax.set_ylabel(str(ev.get("metric", "score")))
        ax.set_title(f"mean {mean:.4f}, std {std:.4f} (band: mean ± std)", fontsize=9)
        return _uri(fig)


def latency(ev: dict[str, Any]) -> str | None:
    """The load test's latency distribution: the bucket counts where recorded, else the
    recorded percentiles; the p95 objective as a line."""
    hist = ev.get("latency_histogram_ms") or {}
    le, count = hist.get("le") or [], hist.get("count") or []
    marks = [(k, ev.get(f"{k}_ms")) for k in ("p50", "p95", "p99")]
    marks = [(k, float(v)) for k, v in marks if isinstance(v, int | float) and math.isfinite(v)]
    limit = ev.get("p95_limit_ms")
    if not (le and len(le) == len(count)) and not marks:
        return None
    with _figure(6.5, 2.6) as fig:
        ax = fig.add_subplot()
        if le and len(le) == len(count):
            step = 10 ** (1 / 8)
            lefts = [x / step for x in le]
            ax.bar(lefts, count, width=[x - lo for x, lo in zip(le, lefts, strict=True)],
                   align="edge", color=AGENT, edgecolor="white", linewidth=0.5)
            ax.set_ylabel("requests")
        else:  # evidence from before the bucket counts were kept
            ax.bar([k for k, _ in marks], [v for _, v in marks], color=AGENT)
            ax.set_yscale("log")
            ax.set_ylabel("ms (log scale)")
        if le:
            from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("latency, ms (log scale; from each request's intended send time)")
            top = max(count) if count else 1
            for i, (k, v) in enumerate(marks):  # labels at three heights: close values stay legible
                ax.axvline(v, color="#424242", linestyle=":", linewidth=1)
                ax.text(v, top * (1.2 - 0.1 * i), f"{k} {v:g}", fontsize=7.5, ha="center", va="bottom",
                        backgroundcolor="white")
            lo, hi = min(lefts), max(le)
            if isinstance(limit, int | float):
                ax.axvline(limit, color=FAILED, linestyle="--", linewidth=1.2)
                ax.text(limit, top * 0.55, f" p95 objective\n {limit:g} ms", color=FAILED, fontsize=8)
                lo, hi = min(lo, float(limit)), max(hi, float(limit))
            ax.set_xlim(lo / 1.6, hi * 1.8)
            ax.set_ylim(0, top * 1.32)
        elif isinstance(limit, int | float):
            ax.axhline(limit, color=FAILED, linestyle="--", linewidth=1.2)
        return _uri(fig)


SHIFTED = re.compile(r"^'(?P<f>[^']+)' (?:shifted|with)")


def drift(ev: dict[str, Any]) -> str | None:
    """The drift drill: per sample the gate made, which features the detector flagged, the
    shifted feature marked (green: flagged as it should be, red: wrongly flagged or missed)."""
    samples = [s for s in ev.get("samples") or [] if isinstance(s, dict)]
    if not samples:
        return None
    expected = [m.group("f") if (m := SHIFTED.match(str(s.get("sample", "")))) else None for s in samples]
    features: list[str] = []
    for s, f in zip(samples, expected, strict=True):
        for name in ([f] if f else []) + [str(x) for x in s.get("flagged") or []]:
            if name not in features:
                features.append(name)
    if not features:
        features = ["(none flagged)"]
    with _figure(min(9.0, 3.2 + 0.75 * len(features)), 0.32 * len(samples) + 1.3) as fig:
        ax = fig.add_subplot()
        for y, (s, f) in enumerate(zip(samples, expected, strict=True)):
            flagged = {str(x) for x in s.get("flagged") or []}
            for x, name in enumerate(features):
                if name == f:
                    ax.add_patch(_rect(x, y, PASSED if name in flagged else FAILED))
                if name in flagged:
                    ax.plot(x, y, "o", color=PASSED if name == f else FAILED, markersize=7)
            said = s.get("drift_detected")
            ok = said is (f is not None)
            ax.text(len(features) - 0.3, y, "drift" if said else "quiet" if said is False else "?",
                    va="center", fontsize=8, color=PASSED if ok else FAILED)
        ax.set_xticks(range(len(features)), features, rotation=30, ha="right")
        ax.set_yticks(range(len(samples)), [str(s.get("sample", "?"))[:48] for s in samples], fontsize=8)
        ax.set_xlim(-0.6, len(features) + 0.4)
        ax.set_ylim(len(samples) - 0.5, -0.5)
        ax.set_title("dot: flagged by the detector; box: the feature the gate shifted; right: verdict",
                     fontsize=8)
        ax.tick_params(length=0)
        for side in ("left", "bottom"):
            ax.spines[side].set_visible(False)
        return _uri(fig)


def _rect(x: float, y: float, colour: str) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.4, y - 0.4), 0.8, 0.8, fill=False, edgecolor=colour, linewidth=1.5)


def spend(phases: list[PhaseView]) -> str | None:
    """Tokens per phase (stacked by kind) with each phase's cost; None when nothing was spent."""
    if not any(p.tokens or p.cost_usd for p in phases):
        return None
    kinds = [("tokens_in", "input", AGENT), ("tokens_out", "output", ACCENT),
             ("cache_read_tokens", "cache read", "#90caf9"), ("cache_write_tokens", "cache write", "#ffcc80")]
    with _figure(9, 0.4 * len(phases) + 1.2) as fig:
        ax = fig.add_subplot()
        left = [0.0] * len(phases)
        for key, label, colour in kinds:
            values = [float(getattr(p, key)) for p in phases]
            ax.barh(range(len(phases)), values, left=left, color=colour, label=label, height=0.6)
            left = [a + b for a, b in zip(left, values, strict=True)]
        top = max(left) or 1.0
        for y, p in enumerate(phases):
            ax.text(left[y] + top / 100, y, f"${p.cost_usd:.4f}", va="center", fontsize=8)
        ax.set_yticks(range(len(phases)), [p.id for p in phases])
        ax.invert_yaxis()
        ax.set_xlim(0, top * 1.15)
        ax.set_xlabel("tokens (cost at the end of each bar)")
        ax.legend(loc="lower right", fontsize=8, frameon=False)
        return _uri(fig)


PLOTS: dict[str, Callable[..., str | None]] = {
    "timeline": timeline, "score": score, "cv": cv_spread, "latency": latency, "drift": drift,
    "spend": spend,
}
