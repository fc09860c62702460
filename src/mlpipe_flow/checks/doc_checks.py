"""The deployment guide: it covers running the API, building the image, deploying and rolling
back with the commands and paths of this workspace, every workspace path it names exists, and
it holds no placeholder text."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from mlpipe_flow.checks.base import CheckContext, result
from mlpipe_flow.models import CheckResult

PLACEHOLDER = re.compile(r"(?i)\b(TODO|TBD|FIXME|XXX|lorem ipsum|coming soon|to be written|"
                         r"fill (this )?in|placeholder text)\b")
TOPICS = {  # topic -> every pattern must occur
    "running the API locally": [r"uvicorn", r"deployment\.api\.main:app"],
    "building the image": [r"docker (buildx )?build", r"deployment/docker/Dockerfile"],
    "deploying the manifests": [r"kubectl apply", r"deployment/k8s"],
    "rolling back": [r"(?i)rollout undo|roll(ing)?[ -]?back"],
}
PATH_ROOTS = ("deployment", "ab_testing", ".github", "tests", "artifacts")
PATH = re.compile(rf"(?<![\w/.-])((?:{'|'.join(map(re.escape, PATH_ROOTS))})/[\w./-]*)")


def _path(m: re.Match[str], text: str) -> str:
    """The workspace path a match names ("" for a kubectl resource such as deployment/api)."""
    path = m.group(1).rstrip(".,:;)")
    start = text.rfind("\n", 0, m.start()) + 1
    line = text[start:text.find("\n", m.end()) if "\n" in text[m.end():] else len(text)]
    if "kubectl" in line and re.fullmatch(r"deployment/[\w-]+", path):
        return ""
    return path


class DeploymentGuideParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = "deployment-guide.md"
    min_words: int = Field(default=150, ge=0)

    def describe(self) -> str:
        return (f"`{self.path}` must have at least {self.min_words} words, no placeholder text "
                "(TODO, TBD, FIXME, XXX, lorem ipsum, coming soon, ...), and cover running the "
                "API locally (`uvicorn` and `deployment.api.main:app`), building the image "
                "(`docker build` and `deployment/docker/Dockerfile`), deploying (`kubectl "
                "apply` and `deployment/k8s`) and rolling back (`kubectl rollout undo` or "
                "\"roll back\"); every workspace path it names under "
                f"{', '.join(f'`{r}/`' for r in PATH_ROOTS)} must exist.")


def deployment_guide(ctx: CheckContext, params: DeploymentGuideParams) -> CheckResult:
    p = ctx.workspace / params.path
    if not p.is_file():
        return result("failed", f"{params.path} does not exist")
    text = p.read_text(encoding="utf-8", errors="replace")
    problems = []
    words = len(re.findall(r"\w+", text))
    if words < params.min_words:
        problems.append(f"{words} words (at least {params.min_words})")
    holes = sorted({m.group(0) for m in PLACEHOLDER.finditer(text)})
    if holes:
        problems.append(f"placeholder text: {', '.join(holes[:4])}")
    missing = [t for t, pats in TOPICS.items() if not all(re.search(x, text) for x in pats)]
    if missing:
        problems.append(f"does not cover {', '.join(missing)} (with this workspace's commands "
                        f"and paths)")
    named = sorted({_path(m, text) for m in PATH.finditer(text)} - {""})
    absent = [n for n in named if not (ctx.workspace / n).exists()]
    if absent:
        problems.append(f"names paths that do not exist: {', '.join(absent[:5])}")
    ev = {"words": words, "paths_named": named[:20], "topics": list(TOPICS)}
    if problems:
        return result("failed", f"{params.path}: {'; '.join(problems)}", **ev)
    return result("passed", f"{params.path}: {words} words covering "
                  f"{', '.join(TOPICS)}; the {len(named)} workspace path(s) it names exist", **ev)
