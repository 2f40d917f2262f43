"""musubi-tuner (kohya-ss/musubi-tuner, verified against v0.3.4 = commit 30c658c): Wan2.1/2.2, HunyuanVideo and
FramePack LoRAs in three steps: cache latents, cache text-encoder outputs, train with ``accelerate launch``.

The plan writes two files into the run folder: ``dataset.toml`` (musubi's dataset config; see musubi_dataset.py)
and ``accelerate_config.json`` (so a user's global ``accelerate config`` cannot redirect the launch).

GPU choice: ``PlanOptions.gpu_ids`` when given, else the preset's ``training.gpu_ids``, else the machine's default
GPU. Indices are NVML's (PCI bus order), so every step gets ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` and
``CUDA_VISIBLE_DEVICES``; caching runs on the first chosen GPU, training on all of them through accelerate.

Outputs (utils/train_utils.py): ``{name}.safetensors`` at the end, ``{name}-{epoch:06d}.safetensors`` for earlier
epochs, ``{name}-{epoch:06d}-state`` / ``{name}-state`` state folders with ``--save_state``; the trainer logs
``model saved.`` after the last save (trainer_base.py). A resumed run restarts musubi's epoch counter at 1
(``epoch_to_start = 0``; issues #126, #307, #424), so it is written as ``{name}-resume{K}`` and cannot overwrite
the files of the run it continues.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from backends.base import Backend, OutputSpec, Plan, PlanError, PlanOptions, Step, gpu_env, require_path
from backends.musubi_args import (
    ARCH_SPECS,
    CacheRequest,
    TrainRequest,
    accelerate_config,
    cache_latents_args,
    cache_text_args,
    launch_args,
    mixed_precision,
    train_script_args,
)
from backends.musubi_dataset import (
    DatasetFile,
    FrameSettings,
    check_framepack_frames,
    choose_layout,
    image_cache_dir,
    render_dataset_toml,
    round_target_frames,
    scan_folder,
)
from backends.musubi_options import MUSUBI_OPTIONS
from studio.architectures import Architecture
from studio.presets import Preset, path_fields, resolved
from studio.settings import Settings

DATASET_FILE = "dataset.toml"
ACCELERATE_FILE = "accelerate_config.json"
TENSORBOARD_DIR = "tensorboard"
COMPLETION_MARKER = "model saved."
# Only this trainer's fields are needed to resolve its presets' paths; other backends need not be importable.
_FIELDS = {"musubi_tuner": MUSUBI_OPTIONS}
_DIGITS6 = "[0-9]" * 6
_DIGITS8 = "[0-9]" * 8


class MusubiTuner(Backend):
    name = "musubi_tuner"
    label = "musubi-tuner"
    architecture_ids = tuple(ARCH_SPECS)
    options = MUSUBI_OPTIONS
    probe_modules = ("musubi_tuner", "accelerate", "torch", "voluptuous", "toml", "bitsandbytes")
    required_files = ("pyproject.toml", "src/musubi_tuner/wan_train_network.py")
    install_steps = (
        "git clone https://github.com/kohya-ss/musubi-tuner && cd musubi-tuner && git checkout v0.3.4\n"
        "python -m venv venv && . venv/bin/activate\n"
        "pip install torch torchvision --index-url https://download.pytorch.org/whl/cu124\n"
        "pip install -e . && pip install tensorboard"
    )

    # Plan ----------------------------------------------------------------------------------------------------

    def plan(self, preset: Any, settings: Settings, run_dir: str, options: PlanOptions | None = None) -> Plan:
        options = options or PlanOptions()
        arch = self.architecture_of(preset)
        preset = resolved(preset, settings.roots(), _FIELDS)
        _require_absolute_paths(preset)
        run_dir = os.path.abspath(run_dir)
        notes: list[str] = []
        python, cwd = self._interpreter(settings, notes)
        gpu_ids = resolve_gpu_ids(preset, settings, options)
        dataset = self._dataset_file(preset, arch, notes)
        dataset_config = os.path.join(run_dir, DATASET_FILE)
        precision = mixed_precision(preset)
        cache = CacheRequest(dataset_config, skip_existing=not options.regenerate_cache)
        cache_env = _env(options, gpu_ids[:1])
        steps = [
            Step("cache_latents", [python, *cache_latents_args(preset, arch, cache)], cwd, cache_env,
                 "Encode the clips into latents (musubi caches them next to the dataset)"),
            Step("cache_text_encoder", [python, *cache_text_args(preset, arch, cache)], cwd, cache_env,
                 "Encode the captions with the text encoder"),
        ]
        if not options.regenerate_cache:
            notes.append("Existing caches are reused (--skip_existing); choose 'regenerate cache' after changing "
                         "the clips, resolution, frames or fps.")
        files = {DATASET_FILE: render_dataset_toml(dataset)}
        if not options.cache_only:
            train = self._train_request(preset, run_dir, options, notes)
            script, train_notes = train_script_args(preset, arch, train)
            notes += train_notes
            config_path = os.path.join(run_dir, ACCELERATE_FILE)
            launcher = launch_args(config_path=config_path, gpu_ids=gpu_ids, precision=precision,
                                   port=options.master_port)
            steps.append(Step("train", [python, *launcher, *script], cwd, _env(options, gpu_ids),
                              f"Train the LoRA on GPU {','.join(map(str, gpu_ids))}"))
            files[ACCELERATE_FILE] = accelerate_config(gpu_ids=gpu_ids, precision=precision, port=options.master_port)
        outputs = self.output_spec(preset, settings, run_dir=run_dir)
        return Plan(self.name, arch.id, run_dir, files, steps, outputs, notes)

    def _interpreter(self, settings: Settings, notes: list[str]) -> tuple[str, str]:
        install = self.install(settings)
        python = install.python_path()
        if not python:
            notes.append(f"{self.label}'s python is not set in Settings; the run cannot start until "
                         f"Settings > {self.label} > Check install passes.")
        return python or "python", install.install_dir

    def _dataset_file(self, preset: Preset, arch: Architecture, notes: list[str]) -> DatasetFile:
        folder = require_path(preset, "dataset.path", "the folder with your clips and caption files")
        caption_extension = preset.get("dataset.caption_extension")
        if not caption_extension.startswith("."):
            # musubi appends the extension literally: "txt" would look for "clip01txt".
            raise PlanError("dataset.caption_extension", f"{caption_extension!r} must start with a dot, e.g. '.txt'")
        opt = preset.values[f"backend.{self.name}"]
        wanted = preset.get("dataset.frames")
        target = round_target_frames(wanted)
        if target != sorted(set(wanted)) and opt["frame_extraction"] != "full":
            notes.append(f"dataset.frames {wanted} are not all 4N+1; musubi rounds them down, so the dataset uses "
                         f"{target}.")
        frames = FrameSettings(target, opt["frame_extraction"], opt["frame_stride"], opt["frame_sample"],
                               opt["max_frames"], opt["source_fps"])
        window = opt["latent_window_size"] if arch.id == "framepack" else 0
        if window:
            check_framepack_frames(frames, window)
        layout = choose_layout(arch, scan_folder(folder), include_images=opt["include_images"], folder=folder)
        notes += layout.notes
        return DatasetFile(
            folder=folder, cache_dir=cache_directory(preset, arch), resolution=preset.get("dataset.resolution"),
            caption_extension=caption_extension, batch_size=preset.get("dataset.batch_size"),
            num_repeats=preset.get("dataset.num_repeats"), enable_bucket=preset.get("dataset.enable_bucket"),
            frames=frames, layout=layout, latent_window_size=window,
        )

    def _train_request(self, preset: Preset, run_dir: str, options: PlanOptions, notes: list[str]) -> TrainRequest:
        name = preset.get("output.name")
        epochs = 0 if preset.get("training.max_steps") else preset.get("training.epochs")
        if not epochs:
            notes.append(f"training.max_steps = {preset.get('training.max_steps')} decides the length; "
                         "training.epochs is not passed (musubi lets epochs override steps).")
        output_name = name
        if options.resume_from:
            check_resume_point(options.resume_from, name)
            output_name = f"{name}-resume{next_resume_index(preset.get('output.dir'), name)}"
            notes.append(
                f"Resuming from {os.path.basename(options.resume_from)}: musubi restores the LoRA and optimizer "
                "state but counts epochs from 1 again, so this run trains the full training.epochs/max_steps "
                f"(lower them to what is left). Its files are named {output_name}* so the earlier files stay."
            )
        return TrainRequest(os.path.join(run_dir, DATASET_FILE), output_name,
                            os.path.join(run_dir, TENSORBOARD_DIR), options.resume_from, epochs)

    # Outputs -------------------------------------------------------------------------------------------------

    def output_spec(self, preset: Any, settings: Settings, *, run_dir: str = "") -> OutputSpec:
        """Globs relative to ``output.dir``; the TensorBoard folder lives in the run folder, so it is known only
        when ``run_dir`` is given (as an absolute path, which os.path.join keeps as is)."""
        output_dir = _output_dir(preset, settings)
        name = preset.get("output.name")
        return OutputSpec(
            output_dir=output_dir,
            lora_globs=(f"{name}.safetensors", f"{name}-{_DIGITS6}.safetensors", f"{name}-step{_DIGITS8}.safetensors",
                        f"{name}-resume[0-9]*.safetensors"),
            checkpoint_globs=(f"{name}-state", f"{name}-{_DIGITS6}-state", f"{name}-step{_DIGITS8}-state",
                              f"{name}-resume[0-9]*-state"),
            tensorboard_dirs=(os.path.join(os.path.abspath(run_dir), TENSORBOARD_DIR, "*"),) if run_dir else (),
            completion_marker=COMPLETION_MARKER,
        )

    def find_checkpoints(self, preset: Any, settings: Settings) -> list[str]:
        """State folders of this preset's runs in ``output.dir``, oldest first (what "Resume" offers)."""
        output_dir = Path(_output_dir(preset, settings))
        if not output_dir.is_dir():
            return []
        pattern = state_pattern(preset.get("output.name"))
        found = [p for p in output_dir.iterdir() if p.is_dir() and pattern.match(p.name)]
        return [str(p) for p in sorted(found, key=lambda p: (p.stat().st_mtime, p.name))]


# Helpers other modules use (pre-flight, dataset tab) --------------------------------------------------------------


def cache_directory(preset: Preset, arch: Architecture) -> str:
    """``<dataset>/cache/musubi_<code>`` (+ ``_i2v`` variants); a mixed folder's images use ``..._images``."""
    return os.path.join(preset.get("dataset.path"), "cache", ARCH_SPECS[arch.id].cache_name)


def cache_directories(preset: Preset, settings: Settings) -> list[str]:
    """Every cache folder a plan of this preset may write (for "delete cache" and disk-space checks)."""
    from studio.architectures import get_architecture

    preset = resolved(preset, settings.roots(), _FIELDS)
    main = cache_directory(preset, get_architecture(preset.architecture))
    return [main, image_cache_dir(main)]


def resolve_gpu_ids(preset: Preset, settings: Settings, options: PlanOptions) -> list[int]:
    ids = list(options.gpu_ids or preset.get("training.gpu_ids") or [settings.default_gpu])
    if len(set(ids)) != len(ids):
        raise PlanError("training.gpu_ids", f"{ids} lists a GPU twice; give each GPU index once")
    return ids


def state_pattern(name: str) -> re.Pattern[str]:
    """State folder names of ``name`` (train_utils.py EPOCH/STEP/LAST_STATE_NAME), including resumed runs."""
    return re.compile(rf"^{re.escape(name)}(?:-resume\d+)?(?:-\d{{6}}|-step\d{{8}})?-state$")


def check_resume_point(path: str, name: str) -> None:
    if not os.path.isabs(path) or not state_pattern(name).match(os.path.basename(path.rstrip("/\\"))):
        raise PlanError(
            "resume_from",
            f"{path!r} is not a musubi state folder of {name!r} (like {name}-000004-state); pick one from the "
            "Resume list",
        )


def next_resume_index(output_dir: str, name: str) -> int:
    """1 + the highest ``{name}-resume<K>`` already in ``output_dir``."""
    taken = re.compile(rf"^{re.escape(name)}-resume(\d+)")
    found = [int(m.group(1)) for entry in _listdir(output_dir) if (m := taken.match(entry))]
    return max(found, default=0) + 1


def _listdir(folder: str) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []


def _output_dir(preset: Preset, settings: Settings) -> str:
    path = preset.get("output.dir")
    if path.startswith("${"):
        path = resolved(preset, settings.roots(), _FIELDS).get("output.dir")
    return path


def _require_absolute_paths(preset: Preset) -> None:
    """musubi resolves relative paths against its own folder, never the one the user meant."""
    for f in path_fields(preset, _FIELDS):
        value = preset.values[f.section][f.key]
        if value and not os.path.isabs(value):
            raise PlanError(f.path, f"{value!r} is a relative path; write it in full or start it with ${{DATA}}, "
                                    "${MODELS} or ${OUTPUT}")


def _env(options: PlanOptions, gpu_ids: list[int]) -> dict[str, str]:
    env = gpu_env(options)
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in gpu_ids)
    return env
