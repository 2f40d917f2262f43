"""Why a trainer failed, in one line a user can act on, recognised from the end of its log.

Patterns come from the trainers' sources and their issue trackers (see shared/reference): CUDA OOM (torch),
DeepSpeed's ``Unable to find latest file at .../latest`` (runtime/engine.py, diffusion-pipe #73/#159/#387),
diffusion-pipe's ``Processed dataset was empty`` (utils/dataset.py PipelineDataLoader), ``fp8_scaled weights are not
supported`` (utils/common.py), its ``quit()`` after ``You have set a lot of resolutions`` (utils/dataset.py), musubi's
voluptuous ``extra keys not allowed`` (dataset/config_utils.py), ``No training items found in the dataset``
(training/trainer_base.py), ``file not found / ファイルが見つかりません`` (config_utils.py), bitsandbytes' ``No module
named 'triton.ops'`` and DeepSpeed's ``CUDA_HOME does not exist``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Reason:
    code: str
    pattern: re.Pattern[str]
    template: str  # str.format(**match.groupdict(), match=whole match)


def _r(code: str, pattern: str, template: str) -> Reason:
    return Reason(code, re.compile(pattern, re.MULTILINE), template)


# Most specific first: the first that matches anywhere in the examined tail wins.
REASONS: tuple[Reason, ...] = (
    _r("cuda_oom", r"CUDA out of memory\.?(?: Tried to allocate (?P<size>[\d.]+ [KMGT]iB))?",
       "CUDA out of memory{size_text}: lower frames or resolution, raise memory.blocks_to_swap, enable fp8 base "
       "weights and gradient checkpointing"),
    _r("cpu_oom", r"DefaultCPUAllocator: can't allocate memory|std::bad_alloc|MemoryError\b",
       "out of system RAM: lower memory.blocks_to_swap or close other programs; block swap needs much RAM"),
    _r("no_latest", r"Unable to find latest file at (?P<path>\S+?)(?:,|\s|$)",
       "no saved training state to resume from ({path}): the run stopped before its first checkpoint; "
       "set training.checkpoint_every_n_minutes and start fresh"),
    _r("dataset_empty", r"Processed dataset was empty",
       "diffusion-pipe's dataset came out empty after bucketing: lower dataset.batch_size or raise "
       "dataset.num_repeats, and check that clips have at least the bucket's frames"),
    _r("no_items", r"No training items found in the dataset",
       "musubi found no cached training items: run the cache steps first (they may have failed or been skipped)"),
    _r("extra_keys", r"extra keys not allowed @ data(?P<where>\S*)",
       "the dataset config has a key this trainer version does not accept ({where}); update the trainer or "
       "remove the option"),
    _r("too_many_resolutions", r"You have set a lot of resolutions in the dataset config",
       "diffusion-pipe refused the dataset config: more than 3 resolutions (it quits with exit code 0)"),
    _r("fp8_scaled", r"fp8_scaled weights are not supported",
       "diffusion-pipe cannot load fp8_scaled weights: use the bf16 or plain fp8 model file"),
    _r("triton_ops", r"No module named 'triton\.ops'",
       "bitsandbytes is too old for this triton: upgrade bitsandbytes (pip install -U bitsandbytes) in the "
       "trainer's environment"),
    _r("cuda_home", r"CUDA_HOME does not exist",
       "DeepSpeed needs the CUDA compiler: install cuda-nvcc matching torch's CUDA and set CUDA_HOME"),
    _r("nccl", r"(?P<line>[^\n]*(?:NCCL error|ncclInternalError|ncclSystemError|ncclUnhandledCudaError)[^\n]*)",
       "NCCL error ({line}); on RTX 40xx cards set NCCL_P2P_DISABLE=1 and NCCL_IB_DISABLE=1"),
    _r("port_in_use", r"(?:Address already in use|EADDRINUSE)",
       "the distributed port is taken by another run: start again (a new port is picked per job)"),
    _r("cuda_error", r"(?:RuntimeError|torch\.AcceleratorError): (?P<line>CUDA error: [^\n]*)",
       "{line}"),
    _r("missing_file", r"(?:FileNotFoundError: \[Errno 2\] No such file or directory: (?P<path>'[^'\n]*')|"
                       r"file not found / ファイルが見つかりません: (?P<path2>[^\n]*))",
       "a file is missing: {path}{path2}; check the path in the preset"),
    _r("missing_module", r"ModuleNotFoundError: No module named (?P<module>'[^'\n]+')",
       "the trainer's python lacks the module {module}: install the trainer's requirements in its environment"),
    _r("killed", r"^Killed\s*$|exits with return code = -9|signal 9 \(SIGKILL\)",
       "the trainer was killed by the system (usually out of RAM)"),
)

LAUNCHER_WRAPPERS = ("CalledProcessError",)
_LAST_EXCEPTION = re.compile(r"^(?:[\w.]+\.)?(?P<name>[A-Z]\w*(?:Error|Exception|Interrupt))(?::\s*(?P<msg>.*))?$",
                             re.MULTILINE)


def failure_reason(log_tail: str) -> tuple[str, str] | None:
    """(code, one-line reason) for the first known failure in ``log_tail``, else the last exception line."""
    for reason in REASONS:
        match = reason.pattern.search(log_tail)
        if match:
            groups = {k: (v or "") for k, v in match.groupdict().items()}
            size = groups.pop("size", "")
            text = reason.template.format(size_text=f" (tried to allocate {size})" if size else "", **groups)
            return reason.code, _one_line(text)
    exceptions = list(_LAST_EXCEPTION.finditer(log_tail))
    # accelerate/deepspeed launchers end with their own CalledProcessError about the child's exit status; the
    # child's exception printed before it is the cause the user needs.
    causes = [m for m in exceptions if m.group("name") not in LAUNCHER_WRAPPERS] or exceptions
    if causes:
        last = causes[-1]
        return "exception", _one_line(f"{last.group('name')}: {last.group('msg') or ''}".rstrip(": "))
    return None


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def exit_code_text(code: int | None) -> str:
    """Exit codes as words: negative = killed by a signal (POSIX), 137 = SIGKILL through a shell/launcher."""
    if code is None:
        return "exit status unknown"
    if code < 0:
        import signal

        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    if code == 137:
        return "exit code 137 (killed, usually out of RAM)"
    if code == 3221225477:
        return "exit code 3221225477 (access violation; on Windows usually out of RAM)"
    return f"exit code {code}"
