"""A workflow folder (phases/, prompts/, gates/) loaded and validated into typed models."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from mlpipe_flow.errors import ConfigError, UsageError
from mlpipe_flow.models import Gate, Phase, describe_validation_error

ROLE_DIR = "roles"


def default_workflow_dir() -> Path:
    """The workflow shipped in the wheel; in a source checkout, the repository's top level."""
    packaged = Path(__file__).parent / "workflow"
    if (packaged / "phases").is_dir():
        return packaged
    return Path(__file__).resolve().parents[2]


BUILTIN = "builtin"


def workflow_ref(root: Path, workspace: Path) -> str:
    """How a run's state names its workflow: `builtin` for the one shipped with mlpipe, else its
    folder relative to the workspace, so that a workspace moved elsewhere holds no absolute path."""
    import os

    root = root.resolve()
    if root == default_workflow_dir().resolve():
        return BUILTIN
    return Path(os.path.relpath(root, workspace.resolve())).as_posix()


@dataclass
class Workflow:
    root: Path
    phases: list[Phase]
    gates: dict[str, Gate]
    roles: dict[str, str]
    files: dict[str, Path] = field(default_factory=dict)

    def phase(self, phase_id: str) -> Phase:
        for p in self.phases:
            if p.id == phase_id:
                return p
        known = ", ".join(p.id for p in self.phases)
        raise UsageError(f"unknown phase '{phase_id}' (known: {known})")

    def index(self, phase_id: str) -> int:
        return self.phases.index(self.phase(phase_id))

    def requirements(self, phase: Phase) -> list[str]:
        if phase.requires is not None:
            return phase.requires
        i = self.phases.index(phase)
        return [self.phases[i - 1].id] if i else []


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}:{where} malformed YAML: {problem}") from None


def parse_model(path: Path, model: type[BaseModel], data: Any) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of fields, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe_validation_error(path, e, model)) from None


def load_workflow(root: Path | None = None, *, only_phase: str | None = None) -> Workflow:
    """The workflow in `root`, every file validated. With `only_phase`, check params are
    validated for that phase's gate alone (`mlpipe gate PHASE` need not import every check's
    module); the other gates are still parsed and checked for ids and kinds."""
    root = (root or default_workflow_dir()).resolve()
    if not root.is_dir():
        raise ConfigError(f"workflow folder {root} does not exist")
    for sub in ("phases", "prompts", "gates"):
        if not (root / sub).is_dir():
            raise ConfigError(
                f"workflow folder {root} has no {sub}/ "
                "(a workflow holds phases/, prompts/ and gates/; `mlpipe init DIR` writes one)"
            )
    phase_files = sorted((root / "phases").glob("*.yaml"))
    if not phase_files:
        raise ConfigError(f"{root / 'phases'}: no phase files (*.yaml)")
    phases: list[Phase] = []
    files: dict[str, Path] = {}
    for path in phase_files:
        phase = parse_model(path, Phase, read_yaml(path))
        if phase.id in files:
            raise ConfigError(f"{path}: phase id '{phase.id}' is also used by {files[phase.id]}")
        files[phase.id] = path
        phases.append(phase)
    phases.sort(key=lambda p: p.progress_start)
    only_gate = next((p.gate for p in phases if p.id == only_phase), None)

    roles = {p.stem: p.read_text(encoding="utf-8") for p in (root / "prompts" / ROLE_DIR).glob("*.md")}
    gates: dict[str, Gate] = {}
    for phase in phases:
        path = files[phase.id]
        if not (root / "prompts" / phase.prompt).is_file():
            raise ConfigError(f"{path}: field 'prompt': prompts/{phase.prompt} does not exist")
        if phase.agent not in roles:
            raise ConfigError(
                f"{path}: field 'agent': unknown role '{phase.agent}' "
                f"(roles in prompts/{ROLE_DIR}/: {', '.join(sorted(roles)) or 'none'})"
            )
        ids = [p.id for p in phases]
        for req in phase.requires or []:
            if req not in ids:
                raise ConfigError(f"{path}: field 'requires': unknown phase '{req}'")
        if phase.gate not in gates:
            gates[phase.gate] = load_gate(root / "gates" / f"{phase.gate}.yaml", source=path,
                                          params=only_gate in (None, phase.gate))
    return Workflow(root=root, phases=phases, gates=gates, roles=roles, files=files)


def load_gate(path: Path, source: Path | None = None, *, params: bool = True) -> Gate:
    from mlpipe_flow.checks import format_name, validate_kind, validate_params

    if not path.is_file():
        where = f"{source}: field 'gate': " if source else ""
        raise ConfigError(f"{where}gate file {path} does not exist")
    gate: Gate = parse_model(path, Gate, read_yaml(path))
    seen: set[str] = set()
    for i, check in enumerate(gate.checks):
        if check.id in seen:
            raise ConfigError(f"{path}: checks.{i}.id: '{check.id}' is used twice")
        seen.add(check.id)
        check.name = format_name(path, i, check)
        if params:
            validate_params(path, i, check)
        else:
            validate_kind(path, i, check)
    return gate
