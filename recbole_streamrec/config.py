"""RecBole ``Config`` that also reads this plugin's ``properties/`` (the RecBole-GNN pattern).

Order of precedence, lowest first: RecBole's own defaults → ``properties/overall.yaml`` →
``properties/generative.yaml`` (TIGER and STREAM-Rec only) → ``properties/model/<Model>.yaml`` → ``properties/dataset/<dataset>.yaml`` → ``--config_files`` →
``config_dict`` → command line. Baselines (SASRec, BERT4Rec, …) therefore see the very same split,
evaluator and data settings as TIGER and STREAM-Rec.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml
from recbole.config import Config as RecBoleConfig

from recbole_streamrec.errors import MissingFileError, UserError
from recbole_streamrec.utils import get_model

PROPERTIES_DIR = Path(__file__).resolve().parent.parent / "properties"


# Flags of run_recbole_streamrec.py that are not config keys: RecBole would warn that it "will not use" them.
RUN_SWITCHES = ("--resume", "--eval_only", "--debug")
RUN_OPTIONS = ("--config_files", "--result_file", "--rank_file", "--valid_rank_file")  # --key=value, read by the run script only
RUN_SHORT_OPTIONS = ("-m", "-d")  # -m NAME / -d NAME (argparse's short forms of --model / --dataset)
# Keys that hold lists even when no YAML default says so (any key whose default is a list is one too).
LIST_KEYS = ("stages", "metrics", "topk", "rqvae_hidden_dims")


class Config(RecBoleConfig):
    """RecBole config with the plugin's property files layered on top of RecBole's.

    Unlike RecBole's, list-valued keys given as strings (``--stages=[pretrain,rl]``, ``--stages=pretrain,rl``)
    become lists, bad YAML files and bad values are a one-line :class:`UserError` naming the file or key
    (:func:`validate_config`, run at construction), and the run script's own flags raise no warning.
    """

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None):
        super().__init__(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
        validate_config(self)

    def _load_config_files(self, file_list):
        loaded: dict[str, Any] = {}
        for file in file_list or []:
            loaded.update(read_yaml(file, self.yaml_loader))
        return loaded

    def _update_internal_config_dict(self, file):
        config_dict = read_yaml(file, self.yaml_loader) or None
        if config_dict is not None:
            self.internal_config_dict.update(config_dict)
        return config_dict

    def _load_cmd_line(self):
        # RecBole reads sys.argv itself; hide the run script's own flags from it for that one call
        argv = sys.argv
        sys.argv = [argv[0], *without_run_flags(argv[1:])]
        try:
            return super()._load_cmd_line()
        finally:
            sys.argv = argv

    def _get_final_config_dict(self):
        final = super()._get_final_config_dict()
        for key, value in final.items():
            default = self.internal_config_dict.get(key)
            if isinstance(value, str) and (key in LIST_KEYS or isinstance(default, list)):
                final[key] = parse_list(key, value)
        return final

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            try:
                model = self.external_config_dict["model"]
            except KeyError:
                raise KeyError("model must be given: --model=..., a config file or config_dict") from None
        if isinstance(model, str):
            final_model, final_model_class = model, get_model(model)
        else:
            final_model, final_model_class = model.__name__, model
        if dataset is None:
            dataset = self.external_config_dict.get("dataset", "ml-100k")
        return final_model, final_model_class, dataset

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        if not PROPERTIES_DIR.is_dir():
            raise FileNotFoundError(
                f"property files not found at {PROPERTIES_DIR}; install the package with `pip install -e .` "
                "from a checkout so that properties/ sits beside recbole_streamrec/"
            )
        generative = getattr(model_class, "uses_semantic_ids", False)
        for file in (
            PROPERTIES_DIR / "overall.yaml",
            *([PROPERTIES_DIR / "generative.yaml"] if generative else []),
            PROPERTIES_DIR / "model" / f"{model}.yaml",
            PROPERTIES_DIR / "dataset" / f"{dataset}.yaml",
        ):
            if file.is_file():
                loaded = self._update_internal_config_dict(str(file))
                if file.parent.name == "dataset" and loaded:
                    self.parameters["Dataset"] += [k for k in loaded if k not in self.parameters["Dataset"]]

    def _set_default_parameters(self):
        # RecBole resolves data_path relative to the working directory; keep a relative
        # ``dataset/`` working from any directory by resolving it against the checkout too.
        data_path = self.final_config_dict.get("data_path")
        if data_path and not os.path.isabs(data_path) and not os.path.isdir(data_path):
            candidate = PROPERTIES_DIR.parent / data_path
            if candidate.is_dir():
                self.final_config_dict["data_path"] = str(candidate)
        super()._set_default_parameters()

    def _init_device(self):
        """RecBole's device choice in one process; in a data-parallel worker, the process group on ``ddp_backend``.

        RecBole 1.2.1 always joins with NCCL, which cannot run on a CPU: here ``ddp_backend: auto`` means NCCL when
        each process has a GPU and gloo otherwise. A worker of ``--nproc=N`` has ``local_rank`` in its config
        (:func:`recbole_streamrec.quick_start.run` sets it, with ``world_size``, ``ip``, ``port``, ``offset``); a process
        started by ``torchrun`` is recognised by its environment (``LOCAL_RANK``, ``WORLD_SIZE`` > 1).
        """
        final = self.final_config_dict
        torchrun = "local_rank" not in final and "LOCAL_RANK" in os.environ and int(os.environ.get("WORLD_SIZE", 1)) > 1
        if "local_rank" not in final and not torchrun:
            return super()._init_device()
        import torch

        from recbole_streamrec.distributed import init_process_group, resolve_backend

        if torchrun:
            final.update(local_rank=int(os.environ["LOCAL_RANK"]), world_size=int(os.environ["WORLD_SIZE"]),
                         offset=int(os.environ["RANK"]) - int(os.environ["LOCAL_RANK"]),
                         nproc=int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
        gpu_id = final.get("gpu_id", "")
        final["gpu_id"] = gpu_id = ",".join(map(str, gpu_id)) if isinstance(gpu_id, (tuple, list)) else str(gpu_id)
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu_id  # as RecBole: gpu_id lists the GPUs, one per process
        local_rank, nproc = final["local_rank"], final.get("nproc") or 1
        gpus = [g for g in gpu_id.split(",") if g.strip()]
        if final.get("use_gpu", True) and gpus and torch.cuda.is_available():
            if len(gpus) < nproc:
                raise UserError(f"nproc={nproc} GPU processes need {nproc} GPUs in gpu_id, not {gpu_id!r}: "
                                "give --gpu_id=0,1,…, or --use_gpu=False to run on the CPU (gloo)")
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        else:
            device = torch.device("cpu")
        rank = local_rank + (final.get("offset") or 0)
        world_size = final.get("world_size") or -1
        world_size = world_size if world_size > 0 else nproc
        init_method = "env://" if torchrun else f"tcp://{final.get('ip') or 'localhost'}:{final['port']}"
        init_process_group(resolve_backend(final.get("ddp_backend"), device), rank=rank, world_size=world_size,
                           init_method=init_method)
        final.update(device=device, single_spec=False, world_size=world_size)
        if rank != 0:  # as RecBole: only rank 0 logs and shows progress
            final.update(state="error", show_progress=False, verbose=False)


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """A script's ``--key=value`` arguments as ``{key: value}``, each value read as YAML."""
    overrides = {}
    for arg in args:
        key, _, value = arg.lstrip("-").partition("=")
        overrides[key] = yaml.safe_load(value)
    return overrides


def config_from_args(model: str, dataset: str, config_files: list[str] | None, args: list[str]) -> "Config":
    """A :class:`Config` from a script's own ``--key=value`` arguments (:func:`parse_overrides`), built
    without RecBole's own parsing of ``sys.argv`` (it would read the script's other arguments too)."""
    argv0, sys.argv = sys.argv, sys.argv[:1]
    try:
        return Config(model=model, dataset=dataset, config_file_list=config_files, config_dict=parse_overrides(args))
    finally:
        sys.argv = argv0


def without_run_flags(args: list[str]) -> list[str]:
    """``args`` minus the run script's own flags (``--resume``, ``--config_files=…``, ``-m TIGER``, …)."""
    kept, skip_next = [], False
    for arg in args:
        if skip_next:
            skip_next = False
        elif arg in RUN_SHORT_OPTIONS or arg in ("--model", "--dataset", *RUN_OPTIONS):
            skip_next = True  # the value follows as its own argument
        elif arg not in RUN_SWITCHES and arg.split("=", 1)[0] not in RUN_OPTIONS:
            kept.append(arg)
    return kept


def parse_list(key: str, value: str) -> list:
    """``"[pretrain,rl]"``, ``"[pretrain, rl]"``, ``"pretrain,rl"`` or ``"rl"`` → a list (YAML flow syntax)."""
    text = value.strip()
    if not (text.startswith("[") and text.endswith("]")):
        text = f"[{text}]"
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        parsed = None
    if not isinstance(parsed, list):
        raise UserError(f"config key {key}: cannot read {value!r} as a list; write --{key}=[a,b] or --{key}=a,b")
    return parsed


def read_yaml(file: str | os.PathLike, loader: Any) -> dict[str, Any]:
    """A YAML config file as a dict; a missing file or a syntax error is a :class:`UserError` naming it."""
    try:
        with open(file, encoding="utf-8") as f:
            loaded = yaml.load(f.read(), Loader=loader)
    except FileNotFoundError:
        raise MissingFileError(f"config file not found: {file}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = " ".join(p for p in (getattr(err, "context", None), getattr(err, "problem", None)) if p) or str(err)
        raise UserError(f"{file}{where}: YAML syntax error: {what}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UserError(f"{file}: expected `key: value` lines, found a YAML {type(loaded).__name__}")
    return loaded


# ---- start-up validation: bounded keys of properties/*.yaml (checked only where a model's config has them) ----
_INT_MIN = {  # key: smallest valid value
    **dict.fromkeys(("epochs", "train_batch_size", "eval_batch_size", "stopping_step", "MAX_ITEM_LIST_LENGTH",
                     "text_batch_size", "cf_hidden_size", "cf_epochs", "cf_batch_size", "cooc_window", "rqvae_latent_dim",
                     "rqvae_levels", "rqvae_epochs", "rqvae_batch_size", "d_model", "d_ff", "d_kv", "num_heads",
                     "num_layers", "num_decoder_layers", "beam_size", "pt_epochs", "sft_rounds",
                     "sft_round_patience", "sft_epochs_per_round", "dpo_negative_pool", "rl_epochs",
                     "rl_steps_per_epoch", "rl_batch_size", "rl_hard_negatives", "reasoning_beam", "rl_iterations",
                     "length_bucket_width", "lr_decay_epochs", "threads"), 1),
    "codebook_size": 2, "rl_group_size": 2, "pt_neighbours": 0, "inference_reasoning_steps": 0,
    "warmup_steps": 0, "reasoning_steps": 0,  # l = 0: no trace (the ablation's "TIGER inside STREAM-Rec")
    "nproc": 1,  # processes of a data-parallel run
}
_POSITIVE = ("learning_rate", "pt_learning_rate", "sft_learning_rate", "rl_learning_rate", "cf_learning_rate",
             "rqvae_lr", "trace_gate_learning_rate", "pt_temperature", "state_temperature", "rl_temperature", "sample_temperature", "dpo_beta",
             "rl_clip_eps")
_NON_NEGATIVE = ("rqvae_beta", "dpo_weight", "quant_weight", "quant_beta", "state_weight", "rl_kl_beta",
                 "reward_format_weight", "reward_exact_match_weight", "reward_similarity_weight",
                 "reward_thinking_likelihood_weight", "reward_thinking_ranking_weight", "weight_decay",
                 "progress_interval", "stopping_delta", "popularity_penalty")
_POSITIVE_OPTIONAL = ("time_budget", "pt_time_budget", "sft_time_budget", "rl_time_budget",  # seconds, or ~
                      "sft_attention_learning_rate")  # a rate, or ~ (sft_learning_rate)
_CHOICES = {"item_vector_source": ("text", "collaborative", "cooccurrence", "auto"), "reasoning_decoding": ("greedy", "beam", "sample", "joint", "oracle"),
            "ddp_backend": ("auto", "gloo", "nccl"),
            "reasoning_levels": ("cyclic", "all"), "reasoning_trace": ("annotated", "constant", "collaborative"),
            "trace_vector_source": ("text", "collaborative", "cooccurrence"),
            "trace_token_init": ("members", "random"),
            "rl_advantage": ("total", "per_reward"), "rl_credit": ("rollout", "split"),
            "rl_rollout": ("sample", "beam"), "item_beam": ("pairs", "distinct"),
            **dict.fromkeys(("lr_decay_horizon", "pt_lr_decay_horizon", "sft_lr_decay_horizon", "rl_lr_decay_horizon"),
                            ("epochs", "budget"))}
_OPTIONAL = ("inference_reasoning_steps", "trace_gate", "threads", "lr_decay_epochs", "state_temperature", "stopping_delta",
             *_POSITIVE_OPTIONAL, "pt_lr_decay_horizon", "sft_lr_decay_horizon", "rl_lr_decay_horizon")  # ``~`` is a valid value
STAGES = ("pretrain", "sft", "rl")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _key_problem(key: str, value: Any) -> str | None:
    """What is wrong with ``key: value`` (``None`` when it is valid)."""
    if key in _INT_MIN and not (_is_int(value) and value >= _INT_MIN[key]):
        return f"must be an integer >= {_INT_MIN[key]}"
    if key in (*_POSITIVE, *_POSITIVE_OPTIONAL) and not (_is_number(value) and value > 0):
        return "must be a number > 0"
    if key in _NON_NEGATIVE and not (_is_number(value) and value >= 0):
        return "must be a number >= 0"
    if key == "trace_gate" and not _is_number(value):
        return "must be a number (the gate's starting bias, e.g. -8) or ~"
    if key == "dropout_rate" and not (_is_number(value) and 0 <= value < 1):
        return "must be a number in [0, 1)"
    if key == "min_lr_ratio" and not (_is_number(value) and 0 <= value <= 1):
        return "must be a number in [0, 1]"
    if key in _CHOICES and value not in _CHOICES[key]:
        return "must be one of " + ", ".join(map(str, _CHOICES[key]))
    if key == "stages" and not (isinstance(value, list) and value and all(s in STAGES for s in value)
                                and len(set(value)) == len(value)):
        return f"must be a non-empty list of distinct stages from {', '.join(STAGES)}, e.g. [pretrain,rl]"
    if key == "rqvae_hidden_dims" and not (isinstance(value, list) and all(_is_int(d) and d >= 1 for d in value)):
        return "must be a list of integers >= 1, e.g. [512,256,128]"
    return None


def _origin(config: RecBoleConfig, key: str) -> str:
    """Where ``key``'s value came from, for the error message."""
    if key in config.cmd_config_dict:
        return "command line"
    if key in config.variable_config_dict:
        return "config_dict"
    if key in config.file_config_dict:
        return "--config_files"
    return "properties/*.yaml"


def validate_config(config: RecBoleConfig) -> None:
    """Check every bounded key at start-up; one :class:`UserError` lists each bad key, its value and the valid range."""
    final = config.final_config_dict
    checked = (*_INT_MIN, *_POSITIVE, *_POSITIVE_OPTIONAL, *_NON_NEGATIVE, "dropout_rate", "min_lr_ratio", *_CHOICES, "stages",
               "rqvae_hidden_dims", "trace_gate")
    problems = []
    for key in checked:
        if key not in final or (final[key] is None and key in _OPTIONAL):
            continue
        problem = _key_problem(key, final[key])
        if problem:
            problems.append(f"{key}={final[key]!r} ({_origin(config, key)}) {problem}")
    # a decay that ends with the budget needs a budget (STREAM-Rec: each stage's own key, else the shared one)
    stages = final.get("stages") if isinstance(final.get("stages"), list) else None
    prefixes = tuple({"pretrain": "pt_", "sft": "sft_", "rl": "rl_"}.get(s, "") for s in stages) if stages else ("",)
    for prefix in prefixes:
        own = final.get(f"{prefix}lr_decay_horizon") if prefix else None
        horizon, budget = own or final.get("lr_decay_horizon"), final.get(f"{prefix}time_budget")
        if horizon == "budget" and budget is None and final.get("time_budget") is None:
            key = f"{prefix}lr_decay_horizon" if own else "lr_decay_horizon"
            problems.append(f"{key}=budget ({_origin(config, key)}) needs {prefix}time_budget or time_budget "
                            "(seconds of training)")
    largest_k = max(final.get("topk") or [0])
    if "rqvae_levels" in final and _is_int(final.get("beam_size")) and final["beam_size"] < largest_k:
        problems.append(f"beam_size={final['beam_size']} ({_origin(config, 'beam_size')}) must be >= the largest "
                        f"topk ({largest_k}): the beam is the ranked list")
    if problems:
        raise UserError("invalid config: " + "; ".join(problems))
