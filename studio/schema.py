"""The common part of every preset: sections every backend maps to its own argument names.

Switching backend keeps these values; only ``[backend.<name>]`` is trainer-specific.
"""

from __future__ import annotations

from studio.fields import Field

SCHEMA_VERSION = 2
COMMON_SECTIONS = ("dataset", "model", "network", "optimizer", "training", "memory", "output")
META_KEYS = ("schema_version", "backend", "architecture", "name", "notes", "trainer_version")

WAN22 = ("wan2.2-t2v-a14b", "wan2.2-i2v-a14b")
HUNYUAN_LIKE = ("hunyuan-video", "framepack")

OPTIMIZERS = ("adamw", "adamw8bit", "adamw_optimi", "adamw8bitkahan", "adafactor", "prodigy")
SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine")

COMMON_FIELDS: tuple[Field, ...] = (
    # dataset
    Field("dataset", "path", "path", "${DATA}/my_clips",
          "Folder with the clips/images and a same-name caption file for each (clip.mp4 + clip.txt).",
          "训练素材文件夹：视频/图片与同名描述文件放在一起（clip.mp4 + clip.txt）。", "Dataset folder", "数据集文件夹"),
    Field("dataset", "caption_extension", "str", ".txt",
          "Extension of the caption files, with the dot.", "描述文件扩展名（含点）。", "Caption extension", "描述文件扩展名"),
    Field("dataset", "resolution", "size", [832, 480],
          "Training resolution [width, height]. Trainers snap it to 16 px buckets.",
          "训练分辨率 [宽, 高]，训练器会对齐到 16 像素。", "Resolution [W, H]", "分辨率 [宽, 高]"),
    Field("dataset", "frames", "int_list", [1, 33],
          "Frame counts to train on: diffusion-pipe frame_buckets, musubi target_frames. Wan/Hunyuan need 4N+1 "
          "(33, 49, 81), LTX 8N+1. More frames need much more VRAM.",
          "训练帧数：diffusion-pipe 的 frame_buckets、musubi 的 target_frames。Wan/Hunyuan 必须是 4N+1（33、49、81），"
          "LTX 为 8N+1。帧数越多显存占用越大。", "Frames", "帧数", minimum=1, maximum=1025),
    Field("dataset", "num_repeats", "int", 1, "How many times each item is repeated per epoch.",
          "每个 epoch 中每个素材重复的次数。", "Repeats", "重复次数", minimum=1, maximum=10000),
    Field("dataset", "batch_size", "int", 1, "Items per step on each GPU.", "每张显卡每步的批大小。",
          "Batch size", "批大小", minimum=1, maximum=64),
    Field("dataset", "enable_bucket", "bool", True,
          "Aspect-ratio buckets, so clips of other shapes are not cropped to one aspect.",
          "按宽高比分桶，避免不同比例的素材被裁成同一比例。", "Aspect buckets", "宽高比分桶"),
    # model
    Field("model", "dit", "path", "",
          "Diffusion transformer weights (.safetensors/.pt). For Wan2.2 the low-noise expert.",
          "DiT 主模型权重。Wan2.2 为低噪专家模型。", "DiT / transformer", "DiT 主模型"),
    Field("model", "dit_high_noise", "path", "",
          "Wan2.2 high-noise expert. Leave empty to train only the expert in model.dit.",
          "Wan2.2 高噪专家模型；留空则只训练 model.dit 指定的专家。", "High-noise DiT", "高噪 DiT", only_for=WAN22),
    Field("model", "vae", "path", "", "VAE weights (Wan2.1_VAE.pth for all Wan 14B/1.3B models).",
          "VAE 权重（Wan 系列用 Wan2.1_VAE.pth）。", "VAE", "VAE"),
    Field("model", "text_encoder", "path", "",
          "Text encoder: umT5-XXL for Wan, LLaVA-Llama3 for HunyuanVideo/FramePack, T5 for LTX.",
          "文本编码器：Wan 用 umT5-XXL，HunyuanVideo/FramePack 用 LLaVA-Llama3。", "Text encoder", "文本编码器"),
    Field("model", "text_encoder_2", "path", "", "Second text encoder (CLIP-L) for HunyuanVideo and FramePack.",
          "第二文本编码器（CLIP-L），HunyuanVideo 与 FramePack 需要。", "Text encoder 2", "文本编码器 2",
          only_for=HUNYUAN_LIKE),
    Field("model", "clip", "path", "",
          "Wan2.1 I2V only: the official models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth (ComfyUI's "
          "clip_vision files are not accepted).",
          "仅 Wan2.1 I2V：官方 models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth（ComfyUI 的 clip_vision 不可用）。",
          "CLIP (I2V)", "CLIP（图生视频）", only_for=("wan2.1-i2v-14b",)),
    Field("model", "image_encoder", "path", "", "FramePack only: SigLIP image encoder.",
          "仅 FramePack：SigLIP 图像编码器。", "Image encoder", "图像编码器", only_for=("framepack",)),
    Field("model", "dtype", "choice", "bfloat16",
          "Dtype of the base weights; the trainer's mixed precision must match it (musubi asserts on a mismatch).",
          "底模权重精度；混合精度必须与之一致（musubi 不一致会报错）。", "Weights dtype", "权重精度",
          choices=("bfloat16", "float16")),
    # network
    Field("network", "rank", "int", 32, "LoRA rank (dim). 16-32 for a character, 64+ for complex styles.",
          "LoRA 秩（dim）。角色 16-32，复杂风格 64 以上。", "Rank", "秩 (rank)", minimum=1, maximum=1024),
    Field("network", "alpha", "float", 32.0,
          "LoRA alpha. The effective LR scales with alpha/rank. diffusion-pipe always uses alpha = rank.",
          "LoRA alpha；有效学习率随 alpha/rank 缩放。diffusion-pipe 固定 alpha = rank。", "Alpha", "Alpha",
          minimum=0.0, maximum=4096.0),
    Field("network", "dropout", "float", 0.0, "LoRA dropout (0 = off).", "LoRA dropout（0 为关闭）。",
          "Dropout", "Dropout", minimum=0.0, maximum=1.0),
    # optimizer
    Field("optimizer", "type", "choice", "adamw8bit",
          "Optimizer. adamw8bit / adamw8bitkahan save memory; adamw8bitkahan is diffusion-pipe only.",
          "优化器。adamw8bit / adamw8bitkahan 省显存；adamw8bitkahan 仅 diffusion-pipe 支持。", "Optimizer", "优化器",
          choices=OPTIMIZERS),
    Field("optimizer", "learning_rate", "float", 2e-4, "Learning rate. LoRA usually 5e-5 to 2e-4.",
          "学习率，LoRA 通常 5e-5 到 2e-4。", "Learning rate", "学习率", minimum=1e-8, maximum=1.0),
    Field("optimizer", "weight_decay", "float", 0.01, "Weight decay.", "权重衰减。", "Weight decay", "权重衰减",
          minimum=0.0, maximum=1.0),
    Field("optimizer", "betas", "float_list", [0.9, 0.99], "Adam betas [beta1, beta2].", "Adam 的 betas。",
          "Betas", "Betas", minimum=0.0, maximum=0.99999),
    Field("optimizer", "eps", "float", 1e-8, "Adam epsilon.", "Adam epsilon。", "Epsilon", "Epsilon",
          minimum=0.0, maximum=1.0),
    Field("optimizer", "lr_scheduler", "choice", "constant", "Learning-rate schedule.", "学习率调度。",
          "LR scheduler", "学习率调度", choices=SCHEDULERS),
    Field("optimizer", "warmup_steps", "int", 0, "Warm-up steps.", "预热步数。", "Warm-up steps", "预热步数",
          minimum=0, maximum=1_000_000),
    Field("optimizer", "max_grad_norm", "float", 1.0, "Gradient clipping (0 = off).", "梯度裁剪（0 为关闭）。",
          "Max grad norm", "梯度裁剪", minimum=0.0, maximum=1000.0),
    # training
    Field("training", "epochs", "int", 16, "Number of epochs.", "训练轮数（epoch）。", "Epochs", "轮数",
          minimum=1, maximum=100_000),
    Field("training", "max_steps", "int", 0, "Stop after this many steps (0 = run all epochs).",
          "最多训练步数（0 = 按轮数）。", "Max steps", "最大步数", minimum=0, maximum=10_000_000),
    Field("training", "save_every_n_epochs", "int", 1, "Save a LoRA every N epochs.", "每 N 轮保存一次 LoRA。",
          "Save every N epochs", "每 N 轮保存", minimum=1, maximum=100_000),
    Field("training", "checkpoint_every_n_minutes", "int", 30,
          "Save a resumable training state every N minutes (diffusion-pipe; 0 = only at the end). Without it a "
          "crashed run cannot be resumed.",
          "每 N 分钟保存可续训的状态（diffusion-pipe；0 = 仅在结束时）。没有它，中断后无法续训。",
          "Checkpoint every N min", "每 N 分钟存档", minimum=0, maximum=100_000),
    Field("training", "save_state", "bool", True,
          "Keep the optimizer state with each save so the run can be resumed (musubi --save_state).",
          "保存时同时保存优化器状态以便续训（musubi --save_state）。", "Save resumable state", "保存续训状态"),
    Field("training", "seed", "int", 42, "Random seed.", "随机种子。", "Seed", "随机种子", minimum=0,
          maximum=2**32 - 1),
    Field("training", "gradient_accumulation_steps", "int", 1, "Gradient accumulation steps.", "梯度累积步数。",
          "Grad accumulation", "梯度累积", minimum=1, maximum=1024),
    Field("training", "flow_shift", "float", 3.0,
          "Flow-matching shift (musubi --discrete_flow_shift, diffusion-pipe [model] shift). Wan T2V 3-5.",
          "流匹配 shift（musubi --discrete_flow_shift，diffusion-pipe 的 shift）。", "Flow shift", "流匹配 shift",
          minimum=0.0, maximum=100.0),
    Field("training", "gpu_ids", "int_list", [],
          "GPUs to train on, by index (empty = the machine's default GPU). Several GPUs use the trainer's own "
          "multi-GPU launch.",
          "使用的显卡编号（留空 = 本机默认显卡）。多卡时使用训练器自带的多卡启动方式。", "GPUs", "显卡",
          minimum=0, maximum=63),
    # memory
    Field("memory", "gradient_checkpointing", "bool", True,
          "Recompute activations in the backward pass: much less VRAM for about 30% more time.",
          "反向传播时重算激活值：显存大幅减少，速度约慢 30%。", "Gradient checkpointing", "梯度检查点"),
    Field("memory", "fp8_base", "bool", False,
          "Keep the frozen base model in fp8 (musubi --fp8_base, diffusion-pipe transformer_dtype='float8'). "
          "Halves the weights' VRAM.",
          "底模以 fp8 存放（musubi --fp8_base，diffusion-pipe transformer_dtype='float8'），权重显存减半。",
          "fp8 base model", "fp8 底模"),
    Field("memory", "blocks_to_swap", "int", 0,
          "Transformer blocks kept in CPU RAM and streamed in: less VRAM, more RAM and slower. Wan 14B max 39 "
          "(musubi) / 38 (diffusion-pipe), 1.3B max 28.",
          "放到内存中按需交换的 Transformer 块数：显存更少，但占用内存且更慢。", "Blocks to swap", "交换块数",
          minimum=0, maximum=60),
    Field("memory", "fp8_text_encoder", "bool", False,
          "Run the text encoder in fp8 while caching (musubi --fp8_t5/--fp8_llm). For GPUs under ~16 GB.",
          "缓存文本编码时使用 fp8（musubi --fp8_t5/--fp8_llm），16GB 以下显卡使用。", "fp8 text encoder",
          "fp8 文本编码器"),
    # output
    Field("output", "name", "name", "my_lora", "Base name of the LoRA files.", "LoRA 文件名前缀。",
          "Output name", "输出名称"),
    Field("output", "dir", "path", "${OUTPUT}", "Where the trainer writes LoRA files and checkpoints.",
          "训练结果与存档的保存位置。", "Output folder", "输出文件夹"),
    Field("output", "save_dtype", "choice", "bfloat16", "Dtype of the saved LoRA.", "保存的 LoRA 精度。",
          "Save dtype", "保存精度", choices=("bfloat16", "float16", "float32")),
)
