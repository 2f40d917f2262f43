"""The model catalogue: which files each trainer needs, and from where (data in catalogue.toml, checked here).

A set is downloaded into ``${MODELS}/<target>/`` keeping the repo's own layout, so every path a set fills into a
preset is ``${MODELS}/<target>/<path in repo>``. The loader refuses a catalogue whose fills point at files its own
patterns would not download, so a typo in the data cannot produce a preset that names a file never fetched.
Users may add sets in ``<studio home>/catalogue.toml`` (same format); ids must not clash with shipped ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from huggingface_hub.utils import filter_repo_objects

from studio.architectures import ARCHITECTURES
from studio.fields import PresetError
from studio.schema import COMMON_FIELDS
from studio.settings import studio_home
from studio.tomlcompat import tomllib

SHIPPED_CATALOGUE = Path(__file__).with_name("catalogue.toml")
SOURCES = ("hf", "modelscope")
CATALOGUE_TRAINERS = ("musubi_tuner", "diffusion_pipe")
MODELSCOPE_DEFAULT_REVISION = "master"  # modelscope/utils/constant.py DEFAULT_MODEL_REVISION
_ID = re.compile(r"^[a-z0-9][a-z0-9.+-]{1,79}$")
_REPO = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}$")
_KEYS = {
    "id", "title", "title_zh", "trainers", "architectures", "hf_repo", "modelscope_repo", "revision",
    "modelscope_revision", "allow", "ignore", "target", "approx_gb", "fills", "trainer_fills", "trainer_values",
    "notes", "notes_zh", "sources", "verified",
}
_COMMON_PATHS = {f.path for f in COMMON_FIELDS if f.kind == "path" and f.section == "model"}
_COMMON_VALUES = {f.path: f for f in COMMON_FIELDS if f.kind != "path"}


class CatalogueError(ValueError):
    """The catalogue file is malformed; the message names the set and key."""


@dataclass(frozen=True)
class ModelSet:
    id: str
    title: str
    title_zh: str
    trainers: tuple[str, ...]
    architectures: tuple[str, ...]
    hf_repo: str
    revision: str
    target: str
    approx_gb: float
    modelscope_repo: str = ""
    modelscope_revision: str = MODELSCOPE_DEFAULT_REVISION
    allow: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    fills: dict[str, str] = field(default_factory=dict)
    trainer_fills: dict[str, dict[str, str]] = field(default_factory=dict)
    trainer_values: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: str = ""
    notes_zh: str = ""
    sources: tuple[str, ...] = ()
    verified: str = ""
    origin: str = ""  # the file it came from

    def repo_for(self, source: str) -> tuple[str, str]:
        """(repo id, revision) on ``source``; raises CatalogueError when the set is not published there."""
        if source == "hf":
            return self.hf_repo, self.revision
        if source == "modelscope":
            if not self.modelscope_repo:
                raise CatalogueError(
                    f"{self.id}: these files are not published on ModelScope; use the Hugging Face source, "
                    "with a mirror endpoint if huggingface.co is unreachable (Settings hf_endpoint or --endpoint, "
                    "e.g. https://hf-mirror.com)"
                )
            return self.modelscope_repo, self.modelscope_revision
        raise CatalogueError(f"unknown source {source!r}; use one of {', '.join(SOURCES)}")

    def fills_for(self, backend: str) -> dict[str, str]:
        """Preset key -> path relative to the target folder, for a preset of ``backend``."""
        return {**self.fills, **self.trainer_fills.get(backend, {})}

    def values_for(self, backend: str) -> dict[str, Any]:
        return dict(self.trainer_values.get(backend, {}))

    def wants(self, repo_path: str) -> bool:
        """True when ``repo_path`` passes the set's allow/ignore patterns (the hub client's own filter)."""
        return bool(list(filter_repo_objects([repo_path], allow_patterns=list(self.allow) or None,
                                             ignore_patterns=list(self.ignore) or None)))

    def applies_to(self, backend: str = "", architecture: str = "") -> bool:
        return (not backend or backend in self.trainers) and (not architecture or architecture in self.architectures)


def load_catalogue(*paths: str | Path) -> dict[str, ModelSet]:
    """Sets by id from the shipped catalogue and the user's (``<studio home>/catalogue.toml``), or from ``paths``."""
    files = [Path(p) for p in paths] or [SHIPPED_CATALOGUE, studio_home() / "catalogue.toml"]
    sets: dict[str, ModelSet] = {}
    for path in files:
        if not path.is_file():
            if paths:
                raise CatalogueError(f"{path}: no such catalogue file")
            continue
        for model_set in parse_catalogue(path.read_text(encoding="utf-8"), str(path)):
            if model_set.id in sets:
                raise CatalogueError(f"{path}: set id {model_set.id!r} is already defined in {sets[model_set.id].origin}")
            sets[model_set.id] = model_set
    return sets


def get_set(set_id: str, catalogue: dict[str, ModelSet] | None = None) -> ModelSet:
    sets = catalogue if catalogue is not None else load_catalogue()
    if set_id not in sets:
        raise LookupError(f"no model set {set_id!r}; `python app.py models` lists them: {', '.join(sorted(sets))}")
    return sets[set_id]


def parse_catalogue(text: str, origin: str = "") -> list[ModelSet]:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"{origin}: not valid TOML ({exc})") from None
    if set(raw) - {"sets"}:
        raise CatalogueError(f"{origin}: only [[sets]] tables are allowed, found {sorted(set(raw) - {'sets'})}")
    return [_parse_set(entry, origin) for entry in raw.get("sets", [])]


def _parse_set(entry: dict[str, Any], origin: str) -> ModelSet:
    set_id = entry.get("id")
    where = f"{origin}: set {set_id!r}"
    if not isinstance(set_id, str) or not _ID.match(set_id):
        raise CatalogueError(f"{where}: id must be lower-case letters, digits, '.', '+', '-'")
    unknown = set(entry) - _KEYS
    if unknown:
        raise CatalogueError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(_KEYS)}")
    trainers = _str_tuple(entry, "trainers", where, required=True)
    for trainer in trainers:
        if trainer not in CATALOGUE_TRAINERS:
            raise CatalogueError(f"{where}: trainer {trainer!r} unknown; use {', '.join(CATALOGUE_TRAINERS)}")
    architectures = _str_tuple(entry, "architectures", where, required=True)
    for arch in architectures:
        if arch not in ARCHITECTURES:
            raise CatalogueError(f"{where}: architecture {arch!r} unknown; known: {', '.join(ARCHITECTURES)}")
    for key in ("hf_repo", "modelscope_repo"):
        repo = entry.get(key, "")
        if (repo or key == "hf_repo") and not (isinstance(repo, str) and _REPO.match(repo)):
            raise CatalogueError(f"{where}: {key} {repo!r} is not an owner/name repo id")
    approx = entry.get("approx_gb")
    if isinstance(approx, bool) or not isinstance(approx, (int, float)) or approx <= 0:
        raise CatalogueError(f"{where}: approx_gb must be a positive number of GB")
    model_set = ModelSet(
        id=set_id, title=_text(entry, "title", where, required=True), title_zh=_text(entry, "title_zh", where),
        trainers=trainers, architectures=architectures, hf_repo=entry["hf_repo"],
        revision=_text(entry, "revision", where) or "main", target=_relative(entry.get("target"), where, "target"),
        approx_gb=float(approx), modelscope_repo=entry.get("modelscope_repo", ""),
        modelscope_revision=_text(entry, "modelscope_revision", where) or MODELSCOPE_DEFAULT_REVISION,
        allow=_str_tuple(entry, "allow", where), ignore=_str_tuple(entry, "ignore", where),
        fills=_fills(entry.get("fills", {}), where, "fills", backend=""),
        trainer_fills={t: _fills(v, where, f"trainer_fills.{t}", backend=t)
                       for t, v in _per_trainer(entry, "trainer_fills", where, trainers).items()},
        trainer_values={t: _values(v, where, t)
                        for t, v in _per_trainer(entry, "trainer_values", where, trainers).items()},
        notes=_text(entry, "notes", where), notes_zh=_text(entry, "notes_zh", where),
        sources=_str_tuple(entry, "sources", where), verified=_text(entry, "verified", where), origin=origin,
    )
    for backend in (*trainers, ""):
        for dotted, rel in model_set.fills_for(backend).items():
            if rel != "." and not model_set.wants(rel):
                raise CatalogueError(f"{where}: {dotted} -> {rel!r} is excluded by the set's allow/ignore patterns, "
                                     "so it would never be downloaded")
    return model_set


def _text(entry: dict[str, Any], key: str, where: str, *, required: bool = False) -> str:
    value = entry.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise CatalogueError(f"{where}: {key} must be {'non-empty ' if required else ''}text")
    return value


def _str_tuple(entry: dict[str, Any], key: str, where: str, *, required: bool = False) -> tuple[str, ...]:
    value = entry.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value) or (required and not value):
        raise CatalogueError(f"{where}: {key} must be a {'non-empty ' if required else ''}list of text")
    return tuple(value)


def _relative(value: Any, where: str, key: str) -> str:
    """A path inside the models root or inside a set's folder: relative, POSIX, no '..'."""
    if not isinstance(value, str) or not value:
        raise CatalogueError(f"{where}: {key} must be a relative path")
    path = PurePosixPath(value)
    if path.is_absolute() or "\\" in value or ".." in path.parts or re.match(r"^[A-Za-z]:", value):
        raise CatalogueError(f"{where}: {key} {value!r} must be relative, with '/' and without '..'")
    return value


def _per_trainer(entry: dict[str, Any], key: str, where: str, trainers: tuple[str, ...]) -> dict[str, dict]:
    tables = entry.get(key, {})
    if not isinstance(tables, dict):
        raise CatalogueError(f"{where}: {key} must be a table per trainer")
    for trainer, table in tables.items():
        if trainer not in trainers or not isinstance(table, dict):
            raise CatalogueError(f"{where}: {key}.{trainer} must be a table for one of the set's trainers {trainers}")
    return tables


def _fills(table: Any, where: str, key: str, *, backend: str) -> dict[str, str]:
    if not isinstance(table, dict):
        raise CatalogueError(f"{where}: {key} must be a table of preset key = relative path")
    for dotted, rel in table.items():
        own_backend = backend and dotted.startswith(f"backend.{backend}.")
        if dotted not in _COMMON_PATHS and not own_backend:
            allowed = sorted(_COMMON_PATHS) + ([f"backend.{backend}.<path key>"] if backend else [])
            raise CatalogueError(f"{where}: {key} key {dotted!r} is not a model path field; allowed: {allowed}")
        _relative(rel, where, f"{key}.{dotted}")
    return dict(table)


def _values(table: dict[str, Any], where: str, backend: str) -> dict[str, Any]:
    checked = {}
    for dotted, value in table.items():
        if dotted not in _COMMON_VALUES:
            raise CatalogueError(f"{where}: trainer_values.{backend} key {dotted!r} is not a common preset field")
        try:
            checked[dotted] = _COMMON_VALUES[dotted].coerce(value)
        except PresetError as exc:
            raise CatalogueError(f"{where}: trainer_values.{backend}: {exc}") from None
    return checked
