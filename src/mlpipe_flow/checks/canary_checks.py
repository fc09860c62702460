"""The canary drill: a real Prometheus on 127.0.0.1 holding series the gate made, and the
agent's canary script judged by what the API serves after it ran.

The series are the API's own: the gate scrapes the served champion's /metrics once (after a
few predictions), and writes every series twice — labelled `track="stable"` and
`track="canary"` (with `job` and `instance`), as a scrape config relabelling two deployments
would — over the last `window_s` (30 minutes), counters growing at a steady rate. It
backfills them with `promtool tsdb create-blocks-from openmetrics` and starts `prometheus` on
the blocks. Three scenarios, healthy and degraded each after `retrain.py --force-promote` made
a new version the served one (no data re-judges the version the healthy canary kept):

- healthy: the canary track is a copy of the stable one. The canary must keep the new version
  (and exit 0).
- no data: only the stable track exists. No data is not health: the new version must go.
- degraded: on the canary track every request counter with a status label gets 500s making
  `degraded_error_share` of the responses (50%: as many 500s as successes), every counter named
  like an error counts as many errors as there were requests, every latency histogram (a name
  with latency/duration/seconds/time) has all its observations above its largest bucket (mean
  `degraded_latency_factor`, 4x, that bound) and latency summaries are
  `degraded_summary_factor` (100) times slower. It must roll back.

Judge: the API started afterwards serves the previous champion (same /predict answers) after
a rollback, the new version after a promotion; the script's output and exit status are only
evidence.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import Field

from mlpipe_flow import proc
from mlpipe_flow.checks.base import CheckContext, pct, result
from mlpipe_flow.checks.ct_drills import (
    Drill,
    DrillError,
    DrillFailed,
    DrillParams,
    Served,
    Truth,
    champion_state,
    decision_brief,
    decisive_champion,
    drill_data,
    run_drill,
    serve,
    served_rule,
    worse_by,
)
from mlpipe_flow.models import CheckResult

LATENCY = re.compile(r"latency|duration|seconds|_time", re.I)
ERRORS = re.compile(r"error|fail|exception", re.I)
STATUS_LABELS = ("status", "code", "status_code", "http_status", "response_code")
SCENARIOS = ("healthy", "no-data", "degraded")


class CanaryDrillParams(DrillParams):
    canary: list[str] = Field(default_factory=lambda: [
        "canary_deployment/canary.py", "--prometheus", "{prometheus}", "--soak-s", "0"])
    canary_timeout_s: float = Field(default=60, gt=0)
    window_s: int = Field(default=1800, ge=300, description="seconds of backfilled series")
    step_s: int = Field(default=15, ge=1)
    request_rate: float = Field(default=20, gt=0, description="req/s of the busiest series")
    degraded_error_share: float = Field(default=0.5, gt=0, lt=1, description="share of the "
                                        "degraded canary's responses that are 500s")
    degraded_latency_factor: float = Field(default=4.0, gt=1, description="the degraded "
                                           "canary's mean latency over the largest bucket bound")
    degraded_summary_factor: float = Field(default=100.0, gt=1, description="what the degraded "
                                           "canary multiplies latency summaries by")

    def describe(self) -> str:
        argv = " ".join(self.canary).replace("{prometheus}", "URL")
        return (f"the gate runs `python {argv}` (URL: a real Prometheus it starts on 127.0.0.1), "
                f"which must finish within {self.canary_timeout_s:g} s, in three scenarios. The "
                f"Prometheus holds {self.window_s:,} s of series (a sample every {self.step_s:g} "
                f"s, counters growing to {self.request_rate:g} req/s) made from your API's own "
                "`/metrics` after it answered the test split, each series written for "
                "`track=\"stable\"` and `track=\"canary\"` (with `job` and `instance` labels). "
                "Healthy (the canary track a copy of the stable one, after `--force-promote` of "
                "a decisively worse version): the API must still serve the new version and the "
                "script exit 0. No data (no canary series at all) and degraded (after another "
                "such promotion; request counters with a status label get 500s making "
                f"{pct(self.degraded_error_share)} of the responses, counters named like errors "
                "count one error per request, latency histograms have every observation above "
                f"their largest bucket, a mean {self.degraded_latency_factor:g} times its bound, "
                f"latency summaries are {self.degraded_summary_factor:g} times slower): the API "
                "must serve the previous model's answers and `/health` version again; the "
                "script's output and exit status are not trusted. " + served_rule(self))


# -- series -------------------------------------------------------------------------------------
def parse_exposition(text: str) -> list[tuple[str, str, list[tuple[str, dict[str, str], float]]]]:
    """[(family name, type, [(sample name, labels, value)])] without `_created` samples."""
    from prometheus_client.parser import text_string_to_metric_families

    out = []
    for fam in text_string_to_metric_families(text):
        samples = [(s.name, dict(s.labels), float(s.value)) for s in fam.samples
                   if not s.name.endswith("_created") and math.isfinite(float(s.value))]
        kind = "counter" if fam.type == "unknown" and fam.name.endswith("_total") else fam.type
        if samples and not fam.name.endswith("_created"):
            out.append((fam.name, kind, samples))
    return out


Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]  # (name, labels) -> final value


def track_series(families: list[tuple[str, str, list[tuple[str, dict[str, str], float]]]],
                 degraded: bool, params: CanaryDrillParams | None = None
                 ) -> tuple[Series, set[str]]:
    """The final value of every series for one track, and the names that grow (counters);
    `degraded` as `params` (default: the drill's defaults) says."""
    p = params or CanaryDrillParams()
    series: Series = {}
    growing: set[str] = set()
    requests = max([v for _, t, ss in families if t == "histogram" for n, _, v in ss
                    if n.endswith("_count")] or [v for _, t, ss in families if t == "counter"
                                                 for _, _, v in ss] or [1.0])
    for name, kind, samples in families:
        if kind in ("counter", "histogram", "summary", "gaugehistogram"):
            growing.update(n for n, _, _ in samples if n.endswith(("_total", "_count", "_sum",
                                                                   "_bucket")) or kind == "counter")
        if kind == "histogram" and degraded and LATENCY.search(name):
            samples = _slow_histogram(samples, p.degraded_latency_factor)
        elif kind == "summary" and degraded and LATENCY.search(name):
            samples = [(n, lab, v * p.degraded_summary_factor
                        if ("quantile" in lab or n.endswith("_sum")) else v)
                       for n, lab, v in samples]
        elif kind == "counter" and degraded:
            samples = _failing_counter(name, samples, requests, p.degraded_error_share)
        for n, lab, v in samples:
            series[(n, tuple(sorted(lab.items())))] = v
    return series, growing


def _slow_histogram(samples: list[tuple[str, dict[str, str], float]], factor: float
                    ) -> list[tuple[str, dict[str, str], float]]:
    """Every observation above the largest finite bucket, their mean `factor` times its bound."""
    bounds = [float(lab["le"]) for n, lab, _ in samples
              if n.endswith("_bucket") and lab.get("le") not in (None, "+Inf")]
    top = max(bounds, default=1.0)
    counts = {tuple(sorted((k, v) for k, v in lab.items())): val for n, lab, val in samples
              if n.endswith("_count")}
    out = []
    for n, lab, v in samples:
        key = tuple(sorted(lab.items()))
        if n.endswith("_bucket"):
            rest = tuple(sorted((k, x) for k, x in lab.items() if k != "le"))
            total = counts.get(rest, v)
            out.append((n, lab, total if lab.get("le") == "+Inf" else 0.0))
        elif n.endswith("_sum"):
            out.append((n, lab, counts.get(key, 0.0) * factor * top))
        else:
            out.append((n, lab, v))
    return out


def _failing_counter(name: str, samples: list[tuple[str, dict[str, str], float]],
                     requests: float, share: float) -> list[tuple[str, dict[str, str], float]]:
    """Error-named counters count one error per request; a 2xx series gets a 500 sibling so that
    500s make `share` of the responses (0.5: as many 500s as 2xx)."""
    per_success = share / (1 - share)
    out = list(samples)
    if ERRORS.search(name):
        out = [(n, lab, max(v, requests)) for n, lab, v in samples]
    for n, lab, v in samples:
        for key in STATUS_LABELS:
            if str(lab.get(key, "")).startswith("2"):
                out.append((n, {**lab, key: "500"}, v * per_success))
    return out


def openmetrics(tracks: dict[str, tuple[Series, set[str]]], now: float, window_s: int,
                step_s: int, rate: float) -> str:
    """OpenMetrics text of every track's series over the window (counters growing linearly
    to `rate` req/s for the busiest series), for promtool's backfill."""
    steps = window_s // step_s
    stamps = [now - window_s + i * step_s for i in range(steps + 1)]
    peak = max([v for series, grow in tracks.values() for (n, _), v in series.items()
                if n in grow] or [1.0]) or 1.0
    scale = rate * window_s / peak
    by_name: dict[str, list[tuple[str, tuple[tuple[str, str], ...], float, bool]]] = {}
    for track, (series, grow) in tracks.items():
        for (name, labels), value in series.items():
            lab = tuple(sorted({**dict(labels), "track": track, "job": "model-api",
                                "instance": f"{track}:8000"}.items()))
            by_name.setdefault(name, []).append((track, lab, value, name in grow))
    lines = []
    for name in sorted(by_name):
        lines.append(f"# TYPE {name} unknown")
        for _, lab, value, grows in by_name[name]:
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in lab)
            for i, ts in enumerate(stamps):
                v = value * scale * i / steps if grows else value
                lines.append(f"{name}{{{text}}} {v:.6g} {ts:.3f}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# -- Prometheus -----------------------------------------------------------------------------
def tools() -> tuple[str, str]:
    prom, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if not prom or not promtool:
        raise DrillError("the canary drill needs Prometheus: `prometheus` and `promtool` are not "
                         "on PATH (Debian: apt-get install prometheus)")
    return prom, promtool


def backfill(drill: Drill, promtool: str, name: str, text: str) -> Path:
    folder = drill.root / "prometheus" / name
    folder.mkdir(parents=True)
    src = folder / "series.om"
    src.write_text(text, encoding="utf-8")
    res = proc.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(src),
                    str(folder / "data")], cwd=folder, timeout_s=120)
    if not res.ok:
        raise DrillError(f"promtool could not backfill the {name} series: "
                         f"{' | '.join(res.output.splitlines()[-3:])}")
    return folder


@contextmanager
def prometheus(drill: Drill, prom: str, folder: Path) -> Iterator[str]:
    (folder / "prometheus.yml").write_text("global:\n  scrape_interval: 1m\nscrape_configs: []\n",
                                           encoding="utf-8")
    port = proc.free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [prom, f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn"]
    with proc.start_server(argv, cwd=folder, log_path=folder / "prometheus.log") as server:
        deadline = time.monotonic() + 30
        while True:
            if not server.alive():
                raise DrillError(f"prometheus exited: {' | '.join(server.log_tail(3))}")
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:  # noqa: S310
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise DrillError("prometheus did not become ready within 30 s")
            time.sleep(0.1)
        yield url


def query(url: str, expr: str) -> list[dict[str, Any]]:
    from urllib.parse import urlencode

    with urllib.request.urlopen(f"{url}/api/v1/query?{urlencode({'query': expr})}",  # noqa: S310
                                timeout=10) as r:
        return list(json.load(r)["data"]["result"])


# -- the drill -----------------------------------------------------------------------------------
def canary_drill(ctx: CheckContext, params: CanaryDrillParams) -> CheckResult:
    try:
        prom, promtool = tools()
    except DrillError as e:
        return result("error", str(e))
    return run_drill(ctx, params, lambda drill, ev: _canary(drill, prom, promtool, ev))


def _canary(drill: Drill, prom: str, promtool: str, ev: dict[str, Any]) -> CheckResult:
    p: CanaryDrillParams = drill.params  # type: ignore[assignment]
    if not (drill.ws / p.canary[0]).is_file():
        raise DrillFailed(f"{p.canary[0]} does not exist")
    truth = Truth(drill)
    champ = champion_state(drill, truth)
    se = decisive_champion(drill, truth, champ)
    metric, decisive = drill.metric, p.decisive_se * se
    ev.update(metric=metric, champion=champ.brief(), decisive_margin=decisive)
    if not champ.metrics_text:
        raise DrillFailed("the API's /metrics did not answer 200: no series to serve the canary")
    families = parse_exposition(champ.metrics_text)
    stable = track_series(families, degraded=False, params=p)
    now = time.time()
    texts = {"healthy": {"stable": stable, "canary": stable},
             "no-data": {"stable": stable},
             "degraded": {"stable": stable,
                          "canary": track_series(families, degraded=True, params=p)}}
    folders = {name: backfill(drill, promtool, name,
                              openmetrics(tracks, now, p.window_s, p.step_s, p.request_rate))
               for name, tracks in texts.items()}
    bad = texts["degraded"]["canary"][0]
    ev["series"] = {"families": len(families), "window_s": p.window_s,
                    "degraded_series": sorted({n for (n, lab), v in bad.items()
                                               if stable[0].get((n, lab)) != v})}
    snaps, runs = {}, {}
    for scenario in SCENARIOS:
        if scenario != "no-data":  # no-data re-judges the version the healthy canary kept
            forced = drill.retrain(drill_data(drill, f"inverted-labels-{scenario}", corrupt=True),
                                   "--force-promote")
            ev[f"forced_before_{scenario}"] = decision_brief(forced)
        with prometheus(drill, prom, folders[scenario]) as url:
            ev.setdefault("prometheus", {})[scenario] = _sanity(url, scenario)
            args = [a.replace("{prometheus}", url) for a in p.canary[1:]]
            res = drill.run(p.canary[0], *args, timeout_s=p.canary_timeout_s)
        runs[scenario] = res
        if res.timed_out:
            raise DrillFailed(f"{' '.join(p.canary[:1] + args)} did not finish within "
                              f"{p.canary_timeout_s:.0f}s (the drill passes --soak-s 0)")
        snaps[scenario] = drill.snapshot(f"after-{scenario}")
    served = serve(drill, truth, snaps)
    ev["served"] = {k: v.brief() for k, v in served.items()}
    ev["canary_exit"] = {k: r.returncode for k, r in runs.items()}

    def is_new(s: Served) -> bool:
        return s.fingerprint != champ.fingerprint and worse_by(drill, s.score, champ.score) > decisive

    healthy, nodata, degraded = served["healthy"], served["no-data"], served["degraded"]
    if not is_new(healthy):
        return result("failed", f"after a canary whose track was as healthy as the stable one the "
                      f"API serves {_what(healthy, champ, metric)}, expected the new version "
                      f"(canary exit {runs['healthy'].returncode})", **ev)
    if runs["healthy"].returncode != 0:
        return result("failed", f"the canary exited with {runs['healthy'].describe()} on a healthy "
                      f"canary: {' | '.join(runs['healthy'].output.splitlines()[-2:])[:200]}",
                      **ev)
    if nodata.fingerprint != champ.fingerprint:
        return result("failed", f"with no canary series in Prometheus the API still serves "
                      f"{_what(nodata, champ, metric)}: no data was taken for health; expected a "
                      f"rollback to version {champ.version} (canary exit "
                      f"{runs['no-data'].returncode})", **ev)
    if degraded.fingerprint != champ.fingerprint or degraded.version != champ.version:
        return result("failed", f"after a degraded canary ({pct(p.degraded_error_share)} errors, "
                      f"latency above every bucket) the API serves "
                      f"{_what(degraded, champ, metric)}, expected a rollback to version "
                      f"{champ.version} ({metric} {champ.score:.4f}) (canary exit "
                      f"{runs['degraded'].returncode})", **ev)
    return result("passed", f"healthy canary kept the new version ({metric} {healthy.score:.4f}); "
                  f"no data and a degraded canary rolled back to version {champ.version} "
                  f"({champ.score:.4f})", **ev)


def _what(s: Served, champ: Served, metric: str) -> str:
    same = "the previous champion" if s.fingerprint == champ.fingerprint else "a new version"
    return f"{same} (version {s.version}, {metric} {s.score:.4f})"


def _sanity(url: str, scenario: str) -> dict[str, Any]:
    """What the backfilled Prometheus holds (evidence that the series are there)."""
    try:
        rows = query(url, "count by (track) ({track!=\"\"})")
    except (OSError, ValueError, KeyError) as e:
        raise DrillError(f"the drill's Prometheus does not answer queries: {e}") from None
    got = {r["metric"].get("track", "?"): int(float(r["value"][1])) for r in rows}
    if not got.get("stable"):
        raise DrillError(f"the backfilled Prometheus holds no series for the {scenario} drill")
    return {"scenario": scenario, "series_by_track": got}
