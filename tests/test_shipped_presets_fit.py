"""A shipped preset named for a card size must fit that card by the studio's own VRAM model and pre-flight."""

from __future__ import annotations

import re

import pytest

from backends import backend_fields
from studio.presets import SHIPPED_DIR, load_preset
from studio.vram import estimate

PRESETS = sorted(SHIPPED_DIR.glob("*.toml"))


@pytest.mark.parametrize("path", PRESETS, ids=[p.stem for p in PRESETS])
def test_preset_fits_the_card_in_its_name(path):
    card = re.search(r"-(\d+)gb", path.stem)
    assert card, f"{path.name}: shipped presets name the card they are for (…-24gb)"
    result = estimate(load_preset(path, backend_fields()), gpu_gib=float(card.group(1)))
    assert result.verdict == "fits", f"{path.name}: {result.total_gib:.1f} GiB on {card.group(1)} GB: {result.text}"
