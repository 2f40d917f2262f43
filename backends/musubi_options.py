"""The ``[backend.musubi_tuner]`` preset table: musubi-tuner settings that have no common-section equivalent.

Choices and limits mirror kohya-ss/musubi-tuner v0.3.4 (commit 30c658c):
``src/musubi_tuner/training/parser_common.py`` (attention flags, timestep sampling, weighting schemes),
``src/musubi_tuner/dataset/config_utils.py`` (frame extraction keys), ``wan_train_network.py`` (Wan2.2 options),
``cache_latents.py`` ``hv_setup_parser`` (VAE chunking/tiling), ``fpack_train_network.py`` (latent window).
"""

from __future__ import annotations

from studio.fields import Field
from studio.schema import HUNYUAN_LIKE, WAN22

SECTION = "backend.musubi_tuner"

WAN_ARCHS = ("wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "wan2.1-i2v-14b", *WAN22)
ATTENTION_MODES = ("sdpa", "flash_attn", "xformers", "flash3")
FRAME_EXTRACTIONS = ("head", "chunk", "slide", "uniform", "full")
# parser_common.py _add_timestep_args: --timestep_sampling choices, in the source's order.
TIMESTEP_SAMPLINGS = (
    "sigma", "uniform", "sigmoid", "shift", "flux_shift", "flux2_shift", "ideogram4_shift", "qwen_shift",
    "krea2_shift", "logsnr", "qinglong_flux", "qinglong_qwen",
)
WEIGHTING_SCHEMES = ("none", "logit_normal", "mode", "cosmap", "sigma_sqrt")


def _field(key: str, kind: str, default: object, texts: tuple[str, str, str, str], **limits: object) -> Field:
    """One musubi field; ``texts`` = (help, help in Chinese, label, label in Chinese)."""
    help_en, help_zh, label, label_zh = texts
    return Field(SECTION, key, kind, default, help_en, help_zh, label, label_zh, **limits)  # type: ignore[arg-type]


MUSUBI_OPTIONS: tuple[Field, ...] = (
    _field("attention", "choice", "sdpa", (
        "Attention kernel for training. sdpa needs nothing extra; flash_attn, xformers and flash3 must be installed "
        "in musubi's environment. flash3 does not support HunyuanVideo.",
        "训练用的注意力实现。sdpa 无需额外安装；flash_attn、xformers、flash3 需要装在 musubi 的环境里。"
        "HunyuanVideo 不支持 flash3。",
        "Attention", "注意力实现"), choices=ATTENTION_MODES),
    _field("split_attn", "bool", False, (
        "Compute attention one sample at a time (--split_attn). Needed for batch size > 1 with FramePack, and "
        "recommended with xformers.",
        "逐个样本计算注意力（--split_attn）。FramePack 批大小大于 1 时必须开启，使用 xformers 时建议开启。",
        "Split attention", "拆分注意力")),
    _field("fp8_scaled", "bool", False, (
        "Scaled fp8 for the DiT (--fp8_scaled): better quality than plain fp8. Needs memory.fp8_base and bf16/fp16 "
        "weights (not an fp8 file). Not available for HunyuanVideo.",
        "DiT 使用带缩放的 fp8（--fp8_scaled），质量优于普通 fp8。需要开启 fp8 底模，且权重须为 bf16/fp16"
        "（不能是 fp8 文件）。HunyuanVideo 不支持。",
        "Scaled fp8", "缩放 fp8"), only_for=(*WAN_ARCHS, "framepack")),
    _field("source_fps", "float", 0.0, (
        "Frame rate of your clips. musubi drops frames to the model's rate (Wan 16, HunyuanVideo 24, FramePack 30) "
        "when this is set. 0 = use the clips' frames as they are.",
        "素材的帧率。设置后 musubi 会抽帧到模型帧率（Wan 16、HunyuanVideo 24、FramePack 30）。0 = 按原帧使用。",
        "Clip frame rate", "素材帧率"), minimum=0.0, maximum=240.0),
    _field("frame_extraction", "choice", "head", (
        "How clips are cut into training samples: head = first N frames; chunk = consecutive N-frame pieces; "
        "slide = windows every frame_stride frames; uniform = frame_sample evenly spaced windows; full = the whole "
        "clip up to max_frames.",
        "如何从视频中截取训练样本：head = 取开头 N 帧；chunk = 连续切成 N 帧的片段；slide = 每隔 frame_stride 帧取一个窗口；"
        "uniform = 均匀取 frame_sample 个窗口；full = 整段视频（最多 max_frames 帧）。",
        "Frame extraction", "抽帧方式"), choices=FRAME_EXTRACTIONS),
    _field("frame_stride", "int", 1, (
        "Step between windows for frame_extraction = slide.", "slide 方式下相邻窗口的间隔帧数。",
        "Frame stride", "窗口间隔"), minimum=1, maximum=10_000),
    _field("frame_sample", "int", 1, (
        "Number of evenly spaced windows per clip for frame_extraction = uniform (1 behaves like head).",
        "uniform 方式下每个视频均匀截取的窗口数（为 1 时等同 head）。", "Windows per clip", "每段窗口数"),
        minimum=1, maximum=1000),
    _field("max_frames", "int", 129, (
        "Longest sample for frame_extraction = full; longer clips are cut, then rounded down to 4N+1.",
        "full 方式下的最大帧数；更长的视频会被截断，再向下取整为 4N+1。", "Max frames", "最大帧数"),
        minimum=1, maximum=2049),
    _field("timestep_sampling", "choice", "shift", (
        "How training timesteps are drawn. The musubi docs use shift for Wan, HunyuanVideo and FramePack.",
        "训练时间步的采样方式。musubi 文档对 Wan、HunyuanVideo、FramePack 均使用 shift。",
        "Timestep sampling", "时间步采样"), choices=TIMESTEP_SAMPLINGS),
    _field("weighting_scheme", "choice", "none", (
        "Loss weighting over timesteps (none = uniform).", "按时间步的损失加权（none = 不加权）。",
        "Weighting scheme", "损失加权"), choices=WEIGHTING_SCHEMES),
    _field("min_timestep", "int", 0, (
        "Lowest training timestep, 0-999 (0 = no limit). For one Wan2.2 expert: low-noise 0, high-noise 875 (T2V) "
        "or 900 (I2V).",
        "训练时间步下限，0-999（0 = 不限制）。单独训练 Wan2.2 专家时：低噪 0，高噪 875（T2V）或 900（I2V）。",
        "Min timestep", "最小时间步"), minimum=0, maximum=999),
    _field("max_timestep", "int", 0, (
        "Highest training timestep, 1-1000 (0 = no limit). For one Wan2.2 expert: low-noise 875 (T2V) or 900 (I2V), "
        "high-noise 1000.",
        "训练时间步上限，1-1000（0 = 不限制）。单独训练 Wan2.2 专家时：低噪 875（T2V）或 900（I2V），高噪 1000。",
        "Max timestep", "最大时间步"), minimum=0, maximum=1000),
    _field("preserve_distribution_shape", "bool", False, (
        "Keep the sampling distribution's shape inside min/max timestep (rejection sampling) instead of squeezing "
        "it. Recommended when training one Wan2.2 expert.",
        "在时间步上下限内保持采样分布形状（拒绝采样），而不是压缩分布。单独训练一个 Wan2.2 专家时建议开启。",
        "Preserve distribution shape", "保持分布形状")),
    _field("timestep_boundary", "int", 0, (
        "Wan2.2: timestep (0-1000) where training switches from the high-noise to the low-noise expert when both "
        "are trained. 0 = the model's default (875 T2V, 900 I2V).",
        "Wan2.2：同时训练两个专家时，高噪与低噪专家切换的时间步（0-1000）。0 = 模型默认值（T2V 875，I2V 900）。",
        "Timestep boundary", "专家切换时间步"), minimum=0, maximum=1000, only_for=WAN22),
    _field("offload_inactive_dit", "bool", False, (
        "Wan2.2 with both experts: keep the idle expert in CPU RAM (about 42 GB shared memory, so 96 GB+ RAM). "
        "Cannot be combined with blocks to swap.",
        "Wan2.2 同时训练两个专家时，把空闲专家放在内存中（约需 42GB，建议 96GB 以上内存）。不能与交换块数同时使用。",
        "Offload idle expert", "卸载空闲专家"), only_for=WAN22),
    _field("vae_chunk_size", "int", 32, (
        "HunyuanVideo/FramePack latent caching: chunk size of the VAE's 3D convolutions (0 = off). 16 or 8 if "
        "caching runs out of memory; does not change quality.",
        "HunyuanVideo/FramePack 缓存潜变量时 VAE 三维卷积的分块大小（0 = 关闭）。显存不足时改为 16 或 8，不影响质量。",
        "VAE chunk size", "VAE 分块大小"), minimum=0, maximum=1024, only_for=HUNYUAN_LIKE),
    _field("vae_tiling", "bool", False, (
        "HunyuanVideo/FramePack latent caching: spatial VAE tiling. Saves memory, may cost a little quality.",
        "HunyuanVideo/FramePack 缓存潜变量时启用 VAE 空间分块，省显存但可能略降质量。", "VAE tiling", "VAE 分块"),
        only_for=HUNYUAN_LIKE),
    _field("vae_cache_cpu", "bool", False, (
        "Wan latent caching: keep the VAE's internal cache on the CPU (--vae_cache_cpu) to save some VRAM.",
        "Wan 缓存潜变量时把 VAE 内部缓存放在 CPU 上（--vae_cache_cpu），可节省部分显存。", "VAE cache on CPU",
        "VAE 缓存放 CPU"), only_for=WAN_ARCHS),
    _field("latent_window_size", "int", 9, (
        "FramePack latent window; clips need at least window*4+1 frames (37 for 9). Used for caching and training.",
        "FramePack 潜变量窗口大小；视频至少需要 窗口×4+1 帧（9 对应 37 帧）。缓存与训练使用同一值。",
        "Latent window size", "潜变量窗口"), minimum=1, maximum=64, only_for=("framepack",)),
    _field("max_data_loader_n_workers", "int", 2, (
        "Data-loader worker processes. Fewer use less RAM; 0 loads in the training process.",
        "数据加载进程数。越少越省内存；0 表示在训练进程内加载。", "Data-loader workers", "数据加载进程"),
        minimum=0, maximum=64),
    _field("include_images", "bool", True, (
        "When the dataset folder holds videos and images, also train on the images (a second musubi dataset with "
        "its own cache). musubi's video datasets ignore images. Text-to-video models only.",
        "数据集文件夹同时包含视频和图片时，也用图片训练（作为第二个 musubi 数据集，缓存单独存放）。musubi 的视频数据集会忽略图片。"
        "仅适用于文生视频模型。",
        "Also train on images", "同时训练图片")),
    _field("network_args", "str", "", (
        "Extra LoRA options as key=value separated by spaces. Allowed keys: loraplus_lr_ratio, rank_dropout, "
        "module_dropout, include_patterns, exclude_patterns (patterns as a list of regexes, e.g. "
        "exclude_patterns=['.*ffn.*']).",
        "额外的 LoRA 参数，key=value 形式，以空格分隔。允许的键：loraplus_lr_ratio、rank_dropout、module_dropout、"
        "include_patterns、exclude_patterns（正则列表，例如 exclude_patterns=['.*ffn.*']）。",
        "Network args", "网络参数")),
)
