"""Runs inside a real musubi-tuner environment (not the studio's): checks a written plan with musubi's own code.

Usage: ``<musubi python> tests/musubi_real_check.py plan.json``; prints one JSON object. The plan JSON holds
``{"arch_code": "wan", "steps": [{"name": ..., "argv": [...]}]}`` and the plan's files are already written.

It parses every step's argv with the real argparse parsers of musubi's scripts and of accelerate's launcher, runs
accelerate's own launch validation (with a hostile default config under $HF_HOME to prove ours wins), and loads
the dataset TOML through musubi's ConfigSanitizer/BlueprintGenerator into real Dataset objects.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

PARSERS = {
    # (step, arch code) -> [(module, parser function)] applied in order, as each script's main() does.
    ("cache_latents", "wan"): [("cache_latents", "setup_parser_common"), ("wan_cache_latents", "wan_setup_parser")],
    ("cache_latents", "hv"): [("cache_latents", "setup_parser_common"), ("cache_latents", "hv_setup_parser")],
    ("cache_latents", "fp"): [("cache_latents", "setup_parser_common"), ("cache_latents", "hv_setup_parser"),
                              ("fpack_cache_latents", "framepack_setup_parser")],
    ("cache_text_encoder", "wan"): [("cache_text_encoder_outputs", "setup_parser_common"),
                                    ("wan_cache_text_encoder_outputs", "wan_setup_parser")],
    ("cache_text_encoder", "hv"): [("cache_text_encoder_outputs", "setup_parser_common"),
                                   ("cache_text_encoder_outputs", "hv_setup_parser")],
    ("cache_text_encoder", "fp"): [("cache_text_encoder_outputs", "setup_parser_common"),
                                   ("fpack_cache_text_encoder_outputs", "framepack_setup_parser")],
    ("train", "wan"): [("training.parser_common", "setup_parser_common"), ("wan_train_network", "wan_setup_parser")],
    ("train", "hv"): [("training.parser_common", "setup_parser_common"), ("hv_train_network", "hv_setup_parser")],
    ("train", "fp"): [("training.parser_common", "setup_parser_common"),
                      ("fpack_train_network", "framepack_setup_parser")],
}


def build_parser(step: str, code: str) -> argparse.ArgumentParser:
    parser = None
    for module_name, function in PARSERS[(step, code)]:
        function_ = getattr(importlib.import_module(f"musubi_tuner.{module_name}"), function)
        parser = function_() if parser is None else function_(parser)
    assert parser is not None
    return parser


def parse_script(step: str, code: str, argv: list[str]) -> dict:
    assert argv[0] == "-m" and argv[1].startswith("musubi_tuner."), argv[:2]
    module = importlib.import_module(argv[1])
    assert hasattr(module, "main"), f"{argv[1]} has no main()"
    args = build_parser(step, code).parse_args(argv[2:])
    return {k: (str(v) if not isinstance(v, (int, float, bool, str, list, type(None))) else v)
            for k, v in vars(args).items()}


def check_launch(argv: list[str]) -> dict:
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env, prepare_simple_launcher_cmd_env

    args = launch_command_parser().parse_args(argv)
    args, _defaults, _ = _validate_launch_command(args)
    if args.multi_gpu:
        env = prepare_multi_gpu_env(args)
        command = ["torchrun"]
    else:
        command, env = prepare_simple_launcher_cmd_env(args)
    return {"multi_gpu": bool(args.multi_gpu), "use_deepspeed": bool(args.use_deepspeed),
            "use_fsdp": bool(args.use_fsdp), "num_processes": args.num_processes,
            "mixed_precision": args.mixed_precision, "module": bool(args.module),
            "training_script": args.training_script, "script_args": list(args.training_script_args),
            "cuda_visible_devices": env.get("CUDA_VISIBLE_DEVICES"), "main_process_port": args.main_process_port,
            "command": command}


def literal_kwargs(items: list[str] | None) -> dict:
    """How trainer_base.py get_optimizer reads --optimizer_args: split("=") then ast.literal_eval the value."""
    import ast

    kwargs = {}
    for item in items or []:
        key, value = item.split("=")
        kwargs[key] = repr(ast.literal_eval(value))
    return kwargs


def load_datasets(dataset_config: str, code: str) -> list[dict]:
    from musubi_tuner.dataset import config_utils
    from musubi_tuner.dataset.config_utils import BlueprintGenerator, ConfigSanitizer

    user_config = config_utils.load_user_config(dataset_config)
    ConfigSanitizer().sanitize_user_config(user_config)  # raises voluptuous.MultipleInvalid on a bad key/type
    blueprint = BlueprintGenerator(ConfigSanitizer()).generate(
        user_config, argparse.Namespace(debug_dataset=False), architecture=code)
    group = config_utils.generate_dataset_group_by_blueprint(blueprint.dataset_group)
    found = []
    for dataset in group.datasets:
        video = hasattr(dataset, "target_frames")
        found.append({
            "kind": "video" if video else "image",
            "items": len(dataset.datasource) if hasattr(dataset.datasource, "__len__") else None,
            "target_frames": list(dataset.target_frames) if video and dataset.target_frames else None,
            "frame_extraction": getattr(dataset, "frame_extraction", None),
            "source_fps": getattr(dataset, "source_fps", None),
            "cache_directory": dataset.cache_directory,
            "resolution": list(dataset.resolution),
            "caption_extension": dataset.caption_extension,
        })
    return found


def allow_import_without_gpu() -> None:
    """wan/modules/t5.py evaluates ``torch.cuda.current_device()`` as a default argument at import time; on a
    machine without a GPU (CI, this check) that raises, although no argument parsing touches a device."""
    import torch

    if not torch.cuda.is_available():
        torch.cuda.current_device = lambda: 0


def main() -> None:
    allow_import_without_gpu()
    with open(sys.argv[1], encoding="utf-8") as handle:
        plan = json.load(handle)
    code = plan["arch_code"]
    report: dict = {"steps": {}}
    for step in plan["steps"]:
        argv = step["argv"][1:]  # argv[0] is the interpreter
        if step["name"] == "train":
            launch = check_launch(argv[2:])  # drop "-m accelerate.commands.launch"
            script = ["-m", launch["training_script"], *launch["script_args"]] if launch["module"] else []
            args = parse_script("train", code, script)
            report["steps"]["train"] = {"launch": launch, "args": args,
                                        "optimizer_kwargs": literal_kwargs(args["optimizer_args"]),
                                        # trainer_base.py: key, value = net_arg.split("=") (exactly two parts)
                                        "network_kwargs": dict(a.split("=") for a in args["network_args"] or [])}
        else:
            report["steps"][step["name"]] = {"args": parse_script(step["name"], code, argv)}
    dataset_config = report["steps"]["cache_latents"]["args"]["dataset_config"]
    report["datasets"] = load_datasets(dataset_config, code)
    print("@@REPORT@@" + json.dumps(report))


if __name__ == "__main__":
    main()
