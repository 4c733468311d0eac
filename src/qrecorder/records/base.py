"""RecordTemp: Qlib's record template -- a step that reads/writes a recorder's artifacts."""

from __future__ import annotations

from typing import Any


class RecordTemp:
    """Subclasses set ``artifact_path`` (folder of their artifacts) and ``depend_cls``."""

    artifact_path: str | None = None
    depend_cls: type[RecordTemp] | None = None

    def __init__(self, recorder: Any) -> None:
        self._recorder = recorder

    @property
    def recorder(self) -> Any:
        if self._recorder is None:
            raise ValueError("This RecordTemp has no recorder")
        return self._recorder

    @classmethod
    def get_path(cls, path: str | None = None) -> str:
        names = [n for n in (cls.artifact_path, path) if n]
        return "/".join(names)

    def save(self, **objects: Any) -> None:
        """Pickle objects into this record's artifact folder."""
        self.recorder.save_objects(artifact_path=self.get_path() or None, **objects)

    def load(self, name: str, parents: bool = True) -> Any:
        """Load an artifact of this record, else (``parents``) of the records it depends on."""
        try:
            return self.recorder.load_object(self.get_path(name))
        except Exception:
            if parents and self.depend_cls is not None:
                return self.depend_cls(recorder=self.recorder).load(name)
            raise

    def generate(self, **kwargs: Any) -> object:  # subclasses may return their results (SigAnaRecord)
        raise NotImplementedError(f"{type(self).__name__} must implement generate()")

    def list(self) -> list[str]:
        """Artifact names this record writes (relative to its artifact path)."""
        return []

    def _prepare(self, skip_existing: bool) -> bool:
        """Qlib's ``skip_existing``: True when this record's artifacts are all there already
        (nothing to do); otherwise check that the records it depends on were generated."""
        if skip_existing:
            try:
                self.check(include_self=True, parents=False)
                return True
            except FileNotFoundError:
                pass
        self.check()
        return False

    def check(self, include_self: bool = False, parents: bool = True) -> None:
        """Raise FileNotFoundError if an artifact this record needs is missing."""
        names = [(type(self), n) for n in self.list()] if include_self else []
        if parents and self.depend_cls is not None:
            names += [(self.depend_cls, n) for n in self.depend_cls(recorder=self.recorder).list()]
        for cls, name in names:
            try:
                self.recorder.load_object(cls.get_path(name))
            except Exception as exc:
                raise FileNotFoundError(f"{cls.__name__} artifact {cls.get_path(name)!r} is missing; "
                                        f"run {cls.__name__}.generate() first") from exc
