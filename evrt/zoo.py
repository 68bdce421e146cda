"""The model zoo: folded models with their cards, in `models/<name>/` of the repository
(or the directory named by $EVRT_MODELS)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import EvrtError

DEFAULT_MODEL = "sdt-synth-gesture"


def zoo_dir() -> Path:
    env = os.environ.get("EVRT_MODELS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "models"


def list_models(root: Path | None = None) -> list[dict]:
    root = root or zoo_dir()
    cards = []
    for card in sorted(root.glob("*/card.json")):
        data = json.loads(card.read_text())
        data["path"] = str(card.parent / data.get("file", "model.evrt"))
        data.setdefault("name", card.parent.name)
        cards.append(data)
    return cards


def resolve_model(name_or_path: str) -> str:
    """A path to an .evrt file, or the name of a zoo model."""
    p = Path(name_or_path)
    if p.suffix == ".evrt" or p.exists():
        if not p.exists():
            raise EvrtError(f"model file {p} does not exist")
        if p.is_dir():
            raise EvrtError(f"model {p} is a directory, not an .evrt file")
        if p.stat().st_size == 0:
            raise EvrtError(f"model file {p} is empty (0 bytes); re-run `evrt convert`")
        return str(p)
    for card in list_models():
        if card["name"] == name_or_path:
            return card["path"]
    names = ", ".join(c["name"] for c in list_models()) or "none found"
    raise EvrtError(f"no model file or zoo model named {name_or_path!r} (zoo: {names})")
