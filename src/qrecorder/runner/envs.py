"""Per-model virtual environments built from a model folder's requirements.txt, cached by hash.

Why layered venvs: a full install of qrecorder + MLflow + pandas per model costs minutes and
needs the network. Instead each venv installs only the model's requirements and then sees the
runner's own site-packages *after* its own (a ``.pth`` file that calls ``site.addsitedir``),
so pinned versions in requirements.txt win and everything else comes from the runner's env.
The cache key is the hash of the requirements text, the Python version and qrecorder's version;
building happens under a file lock, so parallel runs build each venv once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

from qrecorder.errors import RunnerError


def requirements_hash(text: str) -> str:
    from qrecorder import __version__

    key = f"{text.strip()}\n{sys.version}\n{__version__}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class VenvManager:
    """``python_for(requirements)`` returns the interpreter to run a model with, building if needed."""

    def __init__(self, cache_dir: str | Path, log_dir: str | Path | None = None,
                 extra_requirements: list[str] | None = None) -> None:
        self.cache = Path(cache_dir)
        self.extra = list(extra_requirements or [])  # installed after requirements.txt (e.g. Qlib from git)
        self.log_dir = Path(log_dir) if log_dir else self.cache
        self.built: list[Path] = []  # venvs built (not reused) by this manager

    def python_for(self, requirements: str | Path | None) -> str:
        if requirements is None:
            return sys.executable
        req = Path(requirements)
        if not req.is_file():
            raise RunnerError(f"{req}: requirements file not found")
        from filelock import FileLock

        h = requirements_hash("\n".join([req.read_text(), *self.extra]))
        target = self.cache / h
        python = target / "bin" / "python"
        done = target / ".qrecorder-complete"
        if done.exists():
            return str(python)
        self.cache.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.cache / f"{h}.lock")):
            if done.exists():
                return str(python)
            if target.exists():
                shutil.rmtree(target)  # a build that crashed half-way
            self._build(target, req)
            done.write_text(req.read_text())
            self.built.append(target)
        return str(python)

    def _build(self, target: Path, req: Path) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"venv-{target.name}.log"
        with open(log, "ab") as out:
            subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True,
                           stdout=out, stderr=out)
            purelib = subprocess.run([str(target / "bin" / "python"), "-c",
                                      "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                     check=True, capture_output=True, text=True).stdout.strip()
            parents = [p for p in site.getsitepackages() if os.path.isdir(p)]
            lines = "".join(f"import site; site.addsitedir({p!r})\n" for p in parents)
            Path(purelib, "zz_qrecorder_parent.pth").write_text(lines)
            needs = [ln for ln in req.read_text().splitlines() if ln.strip() and not ln.strip().startswith("#")]
            if needs:
                res = subprocess.run([sys.executable, "-m", "pip", "--python", str(target / "bin" / "python"),
                                      "install", "--disable-pip-version-check", "-r", str(req)],
                                     stdout=out, stderr=out)
                if res.returncode != 0:
                    shutil.rmtree(target, ignore_errors=True)
                    raise RunnerError(f"{req}: pip install failed (exit {res.returncode}); see {log}")
            if self.extra:
                res = subprocess.run([sys.executable, "-m", "pip", "--python", str(target / "bin" / "python"),
                                      "install", "--disable-pip-version-check", *self.extra], stdout=out, stderr=out)
                if res.returncode != 0:
                    shutil.rmtree(target, ignore_errors=True)
                    raise RunnerError(f"pip install {' '.join(self.extra)} failed (exit {res.returncode}); see {log}")
