"""diffusion-pipe (tdrussell/diffusion-pipe): one DeepSpeed-launched ``train.py`` that caches, then trains.

The plan is two TOML files (backends/diffusion_pipe_config.py) and one step:

    <trainer python> -m deepspeed.launcher.runner --include localhost:<gpus> --master_port P
        <install>/train.py --deepspeed --config <run>/config.toml --master_port P [--regenerate_cache] ...

Why each part (sources at the commit in DIFFUSION_PIPE_VERSION, DeepSpeed 0.18.4 as pinned in requirements.txt):
- ``python -m deepspeed.launcher.runner`` is what the ``deepspeed`` console script runs; runner.py ends in
  ``if __name__ == "__main__": main()``, so the trainer's own interpreter is the only executable we name.
- ``--include localhost:K`` picks GPUs: runner.py ignores (and deletes) CUDA_VISIBLE_DEVICES as soon as any of
  --include/--exclude/--num_gpus is given, and --num_gpus N always means GPUs 0..N-1.
- train.py's own ``--master_port`` (default 29500) overwrites MASTER_PORT in distributed_init(), so the launcher's
  port alone does not keep two concurrent runs apart (diffusion-pipe #144): both get the same value.
- cwd is the checkout: the trainer opens relative paths such as configs/hy_vae_config.json and submodules/.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from backends.base import Backend, OutputSpec, Plan, PlanError, PlanOptions, Step, gpu_env, require_path
from backends.diffusion_pipe_config import ConfigPaths, config_toml, dataset_toml, option
from backends.diffusion_pipe_options import DIFFUSION_PIPE_OPTIONS, SECTION
from studio.architectures import Architecture
from studio.presets import resolved
from studio.schema import COMMON_FIELDS
from studio.settings import Settings

DATASET_FILE = "dataset.toml"
CONFIG_FILE = "config.toml"
EVAL_DATASET_FILE = "eval_dataset.toml"
COMPLETION_MARKER = "TRAINING COMPLETE!"  # train.py prints it on rank 0 after the final save
# train.py names each run folder datetime.now(timezone.utc).strftime('%Y%m%d_%H-%M-%S'), e.g. 20250212_07-06-40.
RUN_FOLDER = re.compile(r"^\d{8}_\d{2}-\d{2}-\d{2}$")
RUN_GLOB = "[0-9]" * 8 + "_" + "-".join(["[0-9]" * 2] * 3)

_DEFAULTS = {f.path: f.default for f in COMMON_FIELDS}


def save_quit_path(run_folder: str | os.PathLike[str]) -> Path:
    """The signal file that makes diffusion-pipe save a checkpoint, then exit cleanly.

    utils/saver.py Saver.process_step(): ``save_quit_signal_file = self.save_root / 'save_quit'``; after the next
    step it saves a DeepSpeed checkpoint, deletes the file, prints "Manually quitting" and calls sys.exit().
    (An empty file named ``save`` checkpoints without quitting.) ``run_folder`` is the trainer's timestamped run
    folder, see run_folders().
    """
    return Path(run_folder) / "save_quit"


def run_folders(output_dir: str | os.PathLike[str]) -> list[Path]:
    """The trainer's run folders in ``output_dir``, oldest first (the UTC timestamp names sort by time)."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and RUN_FOLDER.match(p.name))


def has_checkpoint(run_folder: Path) -> bool:
    """True when DeepSpeed can resume from it: a ``latest`` file naming an existing ``global_step*`` folder.

    Without it load_checkpoint() warns "Unable to find latest file" and train.py asserts (issues #73, #159, #387).
    """
    latest = run_folder / "latest"
    try:
        tag = latest.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return False
    # utils/saver.py saves without a tag, so DeepSpeed names every checkpoint global_step{N} (engine.save_checkpoint).
    return tag.startswith("global_step") and "/" not in tag and (run_folder / tag).is_dir()


def resumable_runs(output_dir: str | os.PathLike[str]) -> list[str]:
    """Names of the run folders that --resume_from_checkpoint can load, oldest first."""
    return [p.name for p in run_folders(output_dir) if has_checkpoint(p)]


class DiffusionPipe(Backend):
    name = "diffusion_pipe"
    label = "diffusion-pipe"
    architecture_ids = (
        "wan2.1-t2v-1.3b",
        "wan2.1-t2v-14b",
        "wan2.1-i2v-14b",
        "wan2.2-t2v-a14b",
        "wan2.2-i2v-a14b",
        "hunyuan-video",
        "ltx-video",
    )
    options = DIFFUSION_PIPE_OPTIONS
    probe_modules = ("torch", "deepspeed", "toml", "multiprocess", "datasets", "peft", "diffusers", "transformers")
    # submodules/ComfyUI is imported by utils/dataset.py and models/base.py for every model type.
    required_files = ("train.py", "utils/saver.py", "submodules/ComfyUI/comfy", "submodules/ComfyUI/comfy_api")
    install_steps = (
        "git clone --recurse-submodules https://github.com/tdrussell/diffusion-pipe\n"
        "conda create -n diffusion-pipe python=3.12 && conda activate diffusion-pipe\n"
        "pip install torch torchvision torchaudio\n"
        "conda install -c nvidia cuda-nvcc  # match torch.version.cuda, then export CUDA_HOME=$CONDA_PREFIX\n"
        "pip install -r requirements.txt\n"
        "# after every git pull: git submodule update"
    )

    # plan ------------------------------------------------------------------------------------------------------

    def plan(self, preset: Any, settings: Settings, run_dir: str, options: PlanOptions | None = None) -> Plan:
        options = options or PlanOptions()
        arch = self.architecture_of(preset)
        preset = self._resolved(preset, settings)
        run = Path(os.path.abspath(run_dir))
        dataset_dir = require_path(preset, "dataset.path", "the folder with your clips and their .txt captions")
        repeats = preset.get("dataset.num_repeats")
        files = {DATASET_FILE: dataset_toml(preset, directory=dataset_dir, num_repeats=repeats)}
        eval_file = ""
        if option(preset, "eval_path"):
            eval_file = str(run / EVAL_DATASET_FILE)
            files[EVAL_DATASET_FILE] = dataset_toml(preset, directory=option(preset, "eval_path"), num_repeats=1)
        output_dir = self._output_dir(preset)
        paths = ConfigPaths(output_dir=output_dir, dataset_file=str(run / DATASET_FILE), eval_file=eval_file)
        files[CONFIG_FILE] = config_toml(preset, arch, paths)

        gpus = self._gpu_ids(preset, settings, options)
        self._check_pipeline_stages(preset, gpus)
        step = Step(
            name="train",
            argv=self._argv(settings, config_file=str(run / CONFIG_FILE), gpus=gpus, options=options,
                            output_dir=output_dir),
            cwd=self.install(settings).install_dir,
            env=gpu_env(options),
            description=self._describe(gpus, options),
        )
        return Plan(
            backend=self.name,
            architecture=arch.id,
            run_dir=str(run),
            files=files,
            steps=[step],
            outputs=self._spec(output_dir),
            notes=self._notes(preset, arch, settings),
        )

    def _resolved(self, preset: Any, settings: Settings) -> Any:
        # Only this trainer's fields matter for resolving this preset's paths, so the registry (which imports every
        # backend module) is not needed here.
        return resolved(preset, settings.roots(), {self.name: self.options})

    @staticmethod
    def _output_dir(preset: Any) -> str:
        # One folder per preset name, so "Resume" only ever offers this preset's runs.
        base = require_path(preset, "output.dir", "the folder where LoRA files and checkpoints go")
        return str(Path(base) / preset.get("output.name"))

    @staticmethod
    def _gpu_ids(preset: Any, settings: Settings, options: PlanOptions) -> list[int]:
        """Launch-time choice first, then the preset's training.gpu_ids, then the machine's default GPU."""
        chosen = options.gpu_ids or preset.get("training.gpu_ids") or [settings.default_gpu]
        return list(dict.fromkeys(chosen))

    @staticmethod
    def _check_pipeline_stages(preset: Any, gpus: list[int]) -> None:
        stages = option(preset, "pipeline_stages")
        if len(gpus) % stages:
            raise PlanError(
                f"{SECTION}.pipeline_stages",
                f"{len(gpus)} GPU(s) cannot be split into {stages} pipeline stages (DeepSpeed needs the GPU count to "
                f"be a multiple of it); use {stages} or {2 * stages} GPUs, or lower pipeline_stages",
            )

    def _argv(self, settings: Settings, *, config_file: str, gpus: list[int], options: PlanOptions,
              output_dir: str) -> list[str]:
        port = options.master_port
        if not 1024 <= port <= 65535:
            raise PlanError("", f"master port {port} is outside 1024-65535; pick a free port in that range")
        install = self.install(settings)
        python = install.python_path() or "python"
        train_py = str(Path(install.install_dir) / "train.py") if install.install_dir else "train.py"
        argv = [
            python, "-m", "deepspeed.launcher.runner",
            "--include", "localhost:" + ",".join(str(g) for g in gpus),
            "--master_port", str(port),
            train_py, "--deepspeed", "--config", config_file, "--master_port", str(port),
        ]
        if options.regenerate_cache:
            argv.append("--regenerate_cache")
        if options.cache_only:
            argv.append("--cache_only")
        if options.resume_from:
            argv += ["--resume_from_checkpoint", self._checked_resume(options.resume_from, output_dir)]
        return argv

    @staticmethod
    def _checked_resume(name: str, output_dir: str) -> str:
        """Always an explicit folder name: with no value train.py takes the newest entry of output_dir, which may be
        a crashed run without a checkpoint."""
        if not RUN_FOLDER.match(name):
            raise PlanError("", f"{name!r} is not a diffusion-pipe run folder name (like 20250212_07-06-40)")
        resumable = resumable_runs(output_dir)
        if name not in resumable:
            offer = ", ".join(resumable) or "none yet"
            raise PlanError(
                "",
                f"run {name} in {output_dir} has no DeepSpeed checkpoint ('latest' file) to resume from; resumable "
                f"runs: {offer}. Keep checkpoint_every_n_minutes above 0 so crashed runs can be resumed",
            )
        return name

    @staticmethod
    def _describe(gpus: list[int], options: PlanOptions) -> str:
        where = f"GPU {gpus[0]}" if len(gpus) == 1 else "GPUs " + ", ".join(map(str, gpus))
        if options.cache_only:
            return f"diffusion-pipe: cache latents and text embeddings only, on {where}"
        what = f"resume run {options.resume_from}" if options.resume_from else "cache, then train"
        return f"diffusion-pipe: {what} on {where}"

    # notes -----------------------------------------------------------------------------------------------------

    def _notes(self, preset: Any, arch: Architecture, settings: Settings) -> list[str]:
        notes = []
        if not self.install(settings).python_path():
            notes.append(
                "The diffusion-pipe install is not set in Settings, so this plan uses a plain 'python'; the run "
                "cannot start until Settings > diffusion-pipe > Check install passes."
            )
        rank, alpha = preset.get("network.rank"), preset.get("network.alpha")
        if alpha != rank:
            notes.append(
                f"network.alpha = {alpha:g} is not used: diffusion-pipe always trains with alpha = rank ({rank}), "
                f"so the effective learning-rate scale differs from a trainer using alpha/rank = {alpha / rank:g}."
            )
        if preset.get("training.checkpoint_every_n_minutes") == 0:
            notes.append(
                "training.checkpoint_every_n_minutes is 0: the only resumable checkpoint is written at the end, so a "
                "crashed run starts over."
            )
        notes += [f"{dotted} is set but not used: {why}." for dotted, why in _ignored_values(preset, arch)]
        return notes

    # outputs ---------------------------------------------------------------------------------------------------

    def output_spec(self, preset: Any, settings: Settings) -> OutputSpec:
        return self._spec(self._output_dir(self._resolved(preset, settings)))

    @staticmethod
    def _spec(output_dir: str) -> OutputSpec:
        # utils/saver.py: save_model() writes <run>/epoch{N}/ or <run>/step{N}/ (adapter_model.safetensors via
        # PEFT), save_checkpoint() writes DeepSpeed's <run>/global_step{N}/; TensorBoard logs into <run>/ itself.
        return OutputSpec(
            output_dir=output_dir,
            lora_globs=(f"{RUN_GLOB}/epoch*/adapter_model.safetensors", f"{RUN_GLOB}/step*/adapter_model.safetensors"),
            checkpoint_globs=(f"{RUN_GLOB}/global_step*",),
            tensorboard_dirs=(RUN_GLOB,),
            completion_marker=COMPLETION_MARKER,
        )

    def find_checkpoints(self, preset: Any, settings: Settings) -> list[str]:
        """Run folder names that can be passed to --resume_from_checkpoint, oldest first."""
        return resumable_runs(self.output_spec(preset, settings).output_dir)


def _ignored_values(preset: Any, arch: Architecture) -> list[tuple[str, str]]:
    """Common keys with a non-default value that diffusion-pipe has no place for with this architecture."""
    family = arch.family
    rules = [
        ("model.vae", family == "wan", "Wan loads Wan2.1_VAE.pth from backend.diffusion_pipe.ckpt_path"),
        ("model.vae", family == "ltx", "LTX-Video loads its VAE from the model.dit single-file checkpoint"),
        ("model.clip", family == "wan",
         "Wan2.1 I2V loads models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth from ckpt_path"),
        ("model.text_encoder", family == "ltx", "LTX-Video takes its T5 text encoder from the ckpt_path folder"),
        ("model.text_encoder_2", family != "hunyuan", "only HunyuanVideo has a second text encoder"),
        ("model.image_encoder", True, "only FramePack uses an image encoder"),
        ("training.flow_shift", family == "ltx", "models/ltx_video.py reads no shift"),
        ("memory.fp8_text_encoder", family != "wan", "only diffusion-pipe's Wan model has text_encoder_fp8"),
        ("training.seed", True, "diffusion-pipe has no seed setting"),
    ]
    if arch.two_experts:
        expert = option(preset, "wan22_expert")
        unused = "model.dit_high_noise" if expert == "low_noise" else "model.dit"
        rules.append((unused, True, f"this run trains the {expert} expert (backend.diffusion_pipe.wan22_expert); "
                                    "diffusion-pipe trains one expert per run"))
    return [(dotted, why) for dotted, applies, why in rules if applies and preset.get(dotted) != _DEFAULTS[dotted]]
