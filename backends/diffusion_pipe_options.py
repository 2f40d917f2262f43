"""The ``[backend.diffusion_pipe]`` preset fields: what diffusion-pipe needs beyond the common sections.

Every default is the trainer's own default at the verified commit (see DIFFUSION_PIPE_VERSION), so a preset that
leaves a key alone behaves like a hand-written diffusion-pipe config that omits it. Source lines are cited per field.
"""

from __future__ import annotations

from studio.fields import Field
from studio.schema import WAN22

SECTION = "backend.diffusion_pipe"
# The commit the config mapping was checked against (tdrussell/diffusion-pipe, "fix Wan i2v and flf2v").
DIFFUSION_PIPE_VERSION = "diffusion-pipe 8f83dbf (2026-08-20)"

WAN_ARCHS = ("wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "wan2.1-i2v-14b", "wan2.2-t2v-a14b", "wan2.2-i2v-a14b")
CKPT_PATH_ARCHS = (*WAN_ARCHS, "hunyuan-video", "ltx-video")


DIFFUSION_PIPE_OPTIONS: tuple[Field, ...] = (
    Field(
        SECTION, "ckpt_path", "path", "",
        "Official model folder. Wan: the Wan-AI folder (config.json, Wan2.1_VAE.pth, google/umt5-xxl tokenizer); "
        "required even when model.dit is a ComfyUI file - download it with --exclude \"diffusion_pytorch_model*\" "
        "\"models_t5*\". HunyuanVideo: the official ckpts folder (optional when DiT, VAE and both text encoders are "
        "set). LTX-Video: the Diffusers LTX-Video folder (required; its text encoder is used).",
        "官方模型文件夹。Wan：Wan-AI 官方文件夹（含 config.json、Wan2.1_VAE.pth、google/umt5-xxl 分词器），即使 "
        "model.dit 用的是 ComfyUI 文件也必须设置，可用 --exclude \"diffusion_pytorch_model*\" \"models_t5*\" 只下载其余"
        "文件。HunyuanVideo：官方 ckpts 文件夹（若已设置 DiT、VAE 和两个文本编码器则可留空）。LTX-Video：Diffusers 格式的 "
        "LTX-Video 文件夹（必填，文本编码器取自这里）。",
        "Official model folder (ckpt_path)", "官方模型文件夹 (ckpt_path)", only_for=CKPT_PATH_ARCHS,
    ),
    Field(
        SECTION, "activation_checkpointing_mode", "choice", "true",
        "How memory.gradient_checkpointing is done: 'true' = PyTorch checkpointing, 'unsloth' = also offloads the "
        "saved activations to RAM (less VRAM, a bit slower; used by examples/wan_14b_min_vram.toml).",
        "memory.gradient_checkpointing 的方式：'true' 为 PyTorch 检查点，'unsloth' 还会把保存的激活值放到内存"
        "（显存更少、稍慢；examples/wan_14b_min_vram.toml 使用此项）。",
        "Checkpointing mode", "检查点模式", choices=("true", "unsloth"),
    ),
    Field(
        SECTION, "timestep_sample_method", "choice", "logit_normal",
        "How training timesteps are drawn: logit_normal (diffusion-pipe default, favours the middle) or uniform.",
        "训练时间步的采样方式：logit_normal（默认，偏向中段）或 uniform（均匀）。",
        "Timestep sampling", "时间步采样", choices=("logit_normal", "uniform"),
    ),
    Field(
        SECTION, "video_clip_mode", "choice", "single_beginning",
        "Which part of a longer clip is trained: single_beginning (first N frames; right for I2V) or single_middle.",
        "较长视频取哪一段训练：single_beginning（从开头取 N 帧，图生视频应使用此项）或 single_middle（取中间）。",
        "Video clip mode", "视频截取方式", choices=("single_beginning", "single_middle"),
    ),
    Field(
        SECTION, "min_ar", "float", 0.5,
        "Narrowest aspect-ratio bucket (width/height) when dataset.enable_bucket is on.",
        "开启宽高比分桶时最窄的桶（宽/高）。", "Min aspect ratio", "最小宽高比", minimum=0.1, maximum=10.0,
    ),
    Field(
        SECTION, "max_ar", "float", 2.0, "Widest aspect-ratio bucket (width/height) when dataset.enable_bucket is on.",
        "开启宽高比分桶时最宽的桶（宽/高）。", "Max aspect ratio", "最大宽高比", minimum=0.1, maximum=10.0,
    ),
    Field(
        SECTION, "num_ar_buckets", "int", 7,
        "Number of aspect-ratio buckets, spaced evenly in log space from min to max.",
        "宽高比桶的数量，在最小与最大宽高比之间按对数均匀分布。", "Number of aspect buckets", "宽高比桶数量",
        minimum=1, maximum=64,
    ),
    Field(
        SECTION, "pipeline_stages", "int", 1,
        "Split one model over this many GPUs (pipeline parallelism). The number of GPUs must be divisible by it; "
        "block swap needs 1.",
        "把一个模型切分到这么多张显卡上（流水线并行）。显卡数量必须能被它整除；交换块需要为 1。",
        "Pipeline stages", "流水线段数", minimum=1, maximum=8,
    ),
    Field(
        SECTION, "caching_batch_size", "int", 1,
        "Batch size while caching latents and text embeddings (more = faster, more VRAM).",
        "缓存潜变量与文本编码时的批大小（越大越快，显存越多）。", "Caching batch size", "缓存批大小",
        minimum=1, maximum=64,
    ),
    Field(
        SECTION, "kahan_stabilize", "bool", False,
        "AdamW8bitKahan only: its 'stabilize' option (update clipping). The examples leave it off.",
        "仅 AdamW8bitKahan：其 'stabilize' 选项（更新裁剪）。官方示例中为关闭。",
        "Kahan stabilize", "Kahan 稳定化",
    ),
    Field(
        SECTION, "skip_empty_caption", "bool", True,
        "Skip media without a caption file (diffusion-pipe default). Off = train them with an empty caption.",
        "跳过没有描述文件的素材（默认）。关闭则用空描述训练这些素材。", "Skip uncaptioned", "跳过无描述素材",
    ),
    Field(
        SECTION, "wan22_expert", "choice", "low_noise",
        "Wan2.2 A14B has two experts and diffusion-pipe trains one per run: low_noise uses model.dit, high_noise uses "
        "model.dit_high_noise (or the ckpt_path subfolder when empty).",
        "Wan2.2 A14B 有两个专家模型，diffusion-pipe 每次只训练一个：low_noise 使用 model.dit，high_noise 使用 "
        "model.dit_high_noise（留空则用 ckpt_path 下的子文件夹）。",
        "Wan2.2 expert", "Wan2.2 专家", choices=("low_noise", "high_noise"), only_for=WAN22,
    ),
    Field(
        SECTION, "timestep_range", "choice", "expert",
        "Wan2.2 timestep range: 'expert' = the trained expert's inference range (boundary 0.875 for T2V, 0.9 for "
        "I2V), 'full' = 0..1 (the low-noise expert can also be used alone), 'custom' = min_t..max_t.",
        "Wan2.2 时间步范围：'expert' = 所训练专家在推理时负责的范围（T2V 分界 0.875，I2V 为 0.9），'full' = 0..1"
        "（低噪专家也可以单独使用），'custom' = 使用 min_t..max_t。",
        "Timestep range", "时间步范围", choices=("expert", "full", "custom"), only_for=WAN22,
    ),
    Field(
        SECTION, "min_t", "float", 0.0, "Lowest timestep trained when timestep_range is 'custom' (0 = no noise).",
        "timestep_range 为 'custom' 时训练的最低时间步（0 = 无噪声）。", "min_t", "min_t",
        minimum=0.0, maximum=1.0, only_for=WAN22,
    ),
    Field(
        SECTION, "max_t", "float", 1.0, "Highest timestep trained when timestep_range is 'custom' (1 = pure noise).",
        "timestep_range 为 'custom' 时训练的最高时间步（1 = 纯噪声）。", "max_t", "max_t",
        minimum=0.0, maximum=1.0, only_for=WAN22,
    ),
    Field(
        SECTION, "first_frame_conditioning_p", "float", 0.0,
        "LTX-Video only: probability of using the first frame as conditioning (i2v-style training); 0 = off.",
        "仅 LTX-Video：以第一帧作为条件的概率（图生视频式训练）；0 为关闭。", "First-frame conditioning",
        "首帧条件概率", minimum=0.0, maximum=1.0, only_for=("ltx-video",),
    ),
    Field(
        SECTION, "eval_path", "path", "",
        "Folder of held-out clips with captions for a validation loss. Empty = no evaluation (default).",
        "用于计算验证损失的独立素材文件夹（含描述）。留空 = 不做验证（默认）。", "Eval dataset folder", "验证集文件夹",
    ),
    Field(
        SECTION, "eval_every_n_epochs", "int", 1, "With an eval folder: compute the validation loss every N epochs.",
        "设置了验证集时：每 N 轮计算一次验证损失。", "Eval every N epochs", "每 N 轮验证", minimum=1, maximum=100_000,
    ),
    Field(
        SECTION, "eval_before_first_step", "bool", True,
        "With an eval folder: also evaluate before training starts, as a baseline (diffusion-pipe default).",
        "设置了验证集时：训练开始前先验证一次作为基线（默认）。", "Eval before first step", "训练前先验证",
    ),
    Field(
        SECTION, "steps_per_print", "int", 1,
        "Print the DeepSpeed step/loss line every N steps (the studio's loss plot reads it).",
        "每 N 步打印一次 DeepSpeed 的步数/损失行（界面的损失曲线读取此行）。", "Steps per print", "打印间隔步数",
        minimum=1, maximum=10_000,
    ),
)
