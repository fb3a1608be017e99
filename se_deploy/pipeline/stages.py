"""Stages that rerun only when their inputs or config changed.

Each stage declares its inputs (files, by sha256, plus the config it reads) and outputs.
After a stage runs, every output's JSON sidecar gets a ``pipeline`` record with the stage
key and the output's own sha256; a later run skips the stage when the key is unchanged
and every output still matches its recorded hash. Change the config or touch an input
and the stage (and everything downstream, since their input hashes change) runs again.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from se_deploy._util import read_sidecar, sha256_file, sidecar_path, write_json_atomic
from se_deploy.errors import SeDeployError
from se_deploy.names import Name


class StageStatus(Name):
    """What happened to a stage; the why is :attr:`StageResult.reason`, never parsed from here."""

    ran = "ran"
    unchanged = "unchanged"  # inputs, config and outputs as last run: not run again
    skipped = "skipped"  # the stage does not apply (see the reason), not an error
    failed = "failed"  # a user-facing error stopped it, and the pipeline with it


@dataclass
class StageResult:
    name: str
    status: StageStatus
    reason: str = ""
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)
    detail: str = ""
    error: SeDeployError | None = field(default=None, repr=False, compare=False)  # kept to re-raise, not saved

    def to_dict(self) -> dict:
        return {"name": self.name, "status": self.status.value, "reason": self.reason,
                "seconds": self.seconds, "outputs": list(self.outputs), "detail": self.detail}


class Skip(Exception):
    """Raised inside a stage body: the stage cannot run here, with the reason (not an error)."""


@dataclass
class Stage:
    name: str
    outputs: list[Path]
    inputs: list[Path]
    config_key: str
    run: Callable[[], str | None]

    def key(self) -> str:
        h = hashlib.sha256()
        h.update(self.name.encode())
        h.update(self.config_key.encode())
        for p in self.inputs:
            h.update(str(p.name).encode())
            h.update(sha256_file(p).encode() if p.exists() else b"missing")
        return h.hexdigest()

    def up_to_date(self, key: str) -> bool:
        for out in self.outputs:
            if not out.exists():
                return False
            rec = (read_sidecar(out) or {}).get("pipeline") or {}
            if rec.get("key") != key or rec.get("sha256") != sha256_file(out):
                return False
        return bool(self.outputs)

    def stamp(self, key: str) -> None:
        for out in self.outputs:
            side = read_sidecar(out) or {}
            side["pipeline"] = {"stage": self.name, "key": key, "sha256": sha256_file(out),
                                "inputs": [str(p) for p in self.inputs]}
            write_json_atomic(sidecar_path(out), side)


Event = Callable[[str, str, "StageResult | None"], None]


def run_stages(stages: list[Stage], *, force: bool = False, on_event: Event | None = None) -> list[StageResult]:
    """Run stages in order; a stage whose key matches its outputs' sidecars is not run again.

    A stage that raises a SeDeployError ends the run: its result is ``failed`` with the
    error kept in ``error``, and later stages are not started (they need its outputs).
    """
    event = on_event or (lambda *a: None)
    results = []
    for st in stages:
        event("start", st.name, None)
        key = st.key()
        if not force and st.up_to_date(key):
            r = StageResult(st.name, StageStatus.unchanged, "inputs, config and outputs unchanged",
                            outputs=[str(o) for o in st.outputs])
        else:
            t0 = time.perf_counter()
            try:
                detail = st.run() or ""
            except Skip as e:
                r = StageResult(st.name, StageStatus.skipped, str(e), time.perf_counter() - t0)
            except SeDeployError as e:
                r = StageResult(st.name, StageStatus.failed, str(e), time.perf_counter() - t0, error=e)
            else:
                st.stamp(key)
                r = StageResult(st.name, StageStatus.ran, "", time.perf_counter() - t0,
                                [str(o) for o in st.outputs], detail)
        results.append(r)
        event("end", st.name, r)
        if r.status is StageStatus.failed:
            break
    return results


__all__ = ["Skip", "Stage", "StageResult", "StageStatus", "run_stages"]
