"""Model files: present, readable, in a format and dtype the trainer accepts, plus the Wan2.2 expert setup.

The per-file rules (missing paths with a download or one-click fix, ComfyUI fp8_scaled files, dtype vs
``--mixed_precision``, fp8 files vs ``--fp8_base``/``--fp8_scaled``, ComfyUI single files that still need the
official Wan folder for diffusion-pipe, the official CLIP for Wan2.1 I2V) are ``studio.model_files``'s, which
the Downloads tab shares; pre-flight runs them on the preset and adds:

* for Wan2.1 I2V without ``model.clip``: what the trainer does without it (musubi #101: caching has no CLIP
  features, training stops with KeyError 'clip'), and a one-click fix when the official file already sits
  under the models folder;
* Wan2.2 A14B is two experts split at a timestep boundary (875 T2V / 900 I2V): training one of them over all
  timesteps spends most steps on noise levels it never sees at inference (musubi docs/wan.md).
"""

from __future__ import annotations

from pathlib import Path

from studio.check_context import CheckContext
from studio.findings import Finding, Fix
from studio.weights_rules import OFFICIAL_CLIP


def model_files(ctx: CheckContext) -> list[Finding]:
    from studio.model_files import check_model_files

    findings = check_model_files(ctx.original, ctx.settings)
    return [_explain_clip(ctx, f) if f.field == "model.clip" and f.level == "error" and not ctx.get("model.clip")
            else f for f in findings]


def _explain_clip(ctx: CheckContext, finding: Finding) -> Finding:
    found = find_official_clip(ctx)
    action = finding.action or (Fix(f"Use {found}", {"model.clip": found}) if found else None)
    return Finding("error", "model.clip",
                   "Wan2.1 I2V caching and training need --clip: without it the latent cache has no CLIP features "
                   "and training stops with KeyError 'clip' (musubi #101)",
                   finding.fix or f"set it to the official {OFFICIAL_CLIP} (ComfyUI's clip_vision files fail)",
                   action)


def find_official_clip(ctx: CheckContext) -> str:
    """The official CLIP file under the models root (up to two folders deep) as a portable ``${MODELS}/...``
    path, so the fix can fill it in."""
    root = Path(ctx.settings.models_root) if ctx.settings.models_root else None
    if root is None or not root.is_dir():
        return ""
    for pattern in (OFFICIAL_CLIP, f"*/{OFFICIAL_CLIP}", f"*/*/{OFFICIAL_CLIP}"):
        for match in sorted(root.glob(pattern)):
            return "${MODELS}/" + match.relative_to(root).as_posix()
    return ""


def wan22_experts(ctx: CheckContext) -> list[Finding]:
    arch = ctx.arch
    if not arch.two_experts:
        return []
    if ctx.backend != "musubi_tuner":
        return []  # diffusion-pipe's timestep_range defaults to the trained expert's range
    if ctx.get("model.dit_high_noise"):
        return []  # both experts: musubi switches at timestep_boundary itself
    low, high = int(ctx.option("min_timestep", 0) or 0), int(ctx.option("max_timestep", 0) or 0)
    if low or high:
        return []
    boundary = arch.default_boundary
    high_noise = "high" in Path(ctx.get("model.dit") or "").name.lower()
    span = (boundary, 1000) if high_noise else (0, boundary)
    expert = "high-noise" if high_noise else "low-noise"
    changes = {ctx.option_key("min_timestep"): span[0], ctx.option_key("max_timestep"): span[1],
               ctx.option_key("preserve_distribution_shape"): True}
    return [Finding("warning", ctx.option_key("min_timestep"),
                    f"training one Wan2.2 expert ({expert}, from model.dit) over all timesteps: it only runs at "
                    f"timesteps {span[0]}-{span[1]} when generating, so most steps are wasted (musubi docs/wan.md)",
                    f"train timesteps {span[0]}-{span[1]} with preserve_distribution_shape, or set "
                    "model.dit_high_noise to train both experts",
                    Fix(f"Train the {expert} range {span[0]}-{span[1]}", changes))]


CHECKS = (model_files, wan22_experts)
