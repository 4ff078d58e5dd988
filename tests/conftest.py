"""Shared test infrastructure: a tiny synthetic RecBole dataset and config builders.

``tiny`` (written once per session into a temporary folder, never under ``dataset/``): 4 chains of 10 items;
inside a chain item ``j`` is always followed by item ``j + 1`` (cyclically), so the next item is a
deterministic function of the last one. 60 users walk one chain each from a user-dependent start for 8–15
steps (timestamps ``0..len-1``). The ``.item`` file has a ``title:token_seq`` column for the text path.

Every run-level test works inside a session temporary folder (RecBole writes ``log/`` and ``log_tensorboard/``
into the working directory) and with ``sys.argv`` cleared (RecBole's ``Config`` reads ``--key=value``
arguments from it, and pytest's own ``--durations=15`` would otherwise become a config key).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

N_CHAINS, CHAIN_LEN, N_USERS = 4, 10, 60
DATASET = "tiny"

# Keys of every test run (TIGER and baselines alike): small, quiet, CPU, one epoch.
BASE_OVERRIDES: dict[str, Any] = {
    "epochs": 1, "train_batch_size": 64, "eval_batch_size": 64, "show_progress": False, "state": "ERROR",
    "use_gpu": False, "seed": 2020, "reproducibility": True, "threads": 1,
}
# Generative models only: a tiny T5 and a tiny tokenizer over collaborative item vectors (no text encoder).
GENERATIVE_OVERRIDES: dict[str, Any] = {
    "d_model": 32, "d_ff": 64, "d_kv": 8, "num_heads": 2, "num_layers": 1, "num_decoder_layers": 1,
    "dropout_rate": 0.0, "codebook_size": 16, "rqvae_epochs": 30, "rqvae_hidden_dims": [32, 16],
    "rqvae_latent_dim": 8, "beam_size": 10, "item_vector_source": "collaborative", "cf_epochs": 2,
    # fp32 and a flat learning rate: these runs are a few dozen steps, shorter than the default warm-up
    "precision": "fp32", "lr_schedule": "constant", "warmup_steps": 0, "weight_decay": 0.0,
}


def chain_item(chain: int, step: int) -> str:
    """Token of the ``step``-th item (cyclic) of ``chain``: ``i01`` … ``i40``."""
    return f"i{chain * CHAIN_LEN + step % CHAIN_LEN + 1:02d}"


def user_sequence(user: int) -> list[str]:
    """The items user ``user`` interacts with, in time order (length 8–15)."""
    chain, start, length = user % N_CHAINS, (user // N_CHAINS) % CHAIN_LEN, 8 + (3 * user) % 8
    return [chain_item(chain, start + t) for t in range(length)]


def write_tiny_dataset(root: Path) -> Path:
    """Write ``<root>/tiny/tiny.{inter,item}``; returns ``root`` (the ``data_path``)."""
    folder = root / DATASET
    folder.mkdir(parents=True, exist_ok=True)
    inter = ["user_id:token\titem_id:token\ttimestamp:float"]
    for user in range(N_USERS):
        inter += [f"u{user:02d}\t{item}\t{t}" for t, item in enumerate(user_sequence(user))]
    (folder / f"{DATASET}.inter").write_text("\n".join(inter) + "\n", encoding="utf-8")
    colours, kinds = ["red", "green", "blue", "amber"], ["guitar", "strings", "picks", "capo", "tuner"]
    item = ["item_id:token\ttitle:token_seq"]
    for chain in range(N_CHAINS):
        for step in range(CHAIN_LEN):
            title = f"{colours[chain]} {kinds[step % len(kinds)]} model {step} series {chain}"
            item.append(f"{chain_item(chain, step)}\t{title}")
    (folder / f"{DATASET}.item").write_text("\n".join(item) + "\n", encoding="utf-8")
    return root


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a longer end-to-end run (deselect with -m 'not slow')")
    # RecBole 1.2.1 on pandas 2.x / torch 2.x: known, harmless deprecation noise from inside RecBole
    config.addinivalue_line("filterwarnings", "ignore:A value is trying to be set on a copy:FutureWarning")
    config.addinivalue_line("filterwarnings", "ignore:`torch.cuda.amp.GradScaler:FutureWarning")


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> Iterator[None]:
    """One intra-op thread: these models are tiny, and on a shared 2-core machine two spinning OpenMP
    threads competing with another process made a 5 s run take minutes."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    """RecBole's Config parses sys.argv; give it none of pytest's arguments."""
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Session folder: ``data/tiny/…`` (the dataset), ``cache/`` (shared item vectors and semantic IDs)."""
    root = tmp_path_factory.mktemp("streamrec")
    write_tiny_dataset(root / "data")
    return root


@pytest.fixture
def workdir(tiny_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run inside the session folder so RecBole's ``log/`` and ``log_tensorboard/`` land there."""
    monkeypatch.chdir(tiny_root)
    return tiny_root


def overrides(root: Path, model: str, **extra: Any) -> dict[str, Any]:
    """The ``config_dict`` of a test run of ``model`` on ``tiny`` (``extra`` wins)."""
    from recbole_streamrec.utils import get_model

    generative = getattr(get_model(model), "uses_semantic_ids", False)
    return {
        "data_path": str(root / "data"), "cache_dir": str(root / "cache"),
        "checkpoint_dir": str(root / "checkpoints"),
        **BASE_OVERRIDES, **(GENERATIVE_OVERRIDES if generative else {}), **extra,
    }


@pytest.fixture
def make_config(workdir: Path) -> Callable[..., Any]:
    """``make_config("TIGER", beam_size=20)`` → a ``recbole_streamrec.config.Config`` for ``tiny``."""
    from recbole_streamrec.config import Config

    def build(model: str = "TIGER", **extra: Any) -> Config:
        return Config(model=model, dataset=DATASET, config_dict=overrides(workdir, model, **extra))

    return build


@pytest.fixture
def run_overrides(workdir: Path) -> Callable[..., dict[str, Any]]:
    """``run_overrides("SASRec", epochs=2)`` → the ``config_dict`` for ``quick_start.run``."""
    return lambda model, **extra: overrides(workdir, model, **extra)


@pytest.fixture(scope="session")
def tiny_data(tiny_root: Path) -> tuple[Any, ...]:
    """``(config, dataset, train, valid, test)`` for TIGER on ``tiny`` (semantic IDs land in the session cache)."""
    from recbole.utils import init_seed

    from recbole_streamrec.config import Config
    from recbole_streamrec.quick_start import load_data

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", [sys.argv[0]])
        mp.chdir(tiny_root)
        config = Config(model="TIGER", dataset=DATASET, config_dict=overrides(tiny_root, "TIGER"))
        init_seed(config["seed"], config["reproducibility"])
        return (config, *load_data(config))


@pytest.fixture(scope="session")
def make_tiger(tiny_root: Path, tiny_data: tuple[Any, ...]) -> Callable[..., Any]:
    """``make_tiger(num_decoder_layers=2)`` → an untrained TIGER (eval mode) on ``tiny``'s training split."""
    from recbole.utils import init_seed

    from recbole_streamrec.config import Config
    from recbole_streamrec.model.tiger import TIGER

    train = tiny_data[2]

    def build(**extra: Any) -> TIGER:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(sys, "argv", [sys.argv[0]])
            mp.chdir(tiny_root)
            config = Config(model="TIGER", dataset=DATASET, config_dict=overrides(tiny_root, "TIGER", **extra))
            init_seed(config["seed"], config["reproducibility"])
            return TIGER(config, train._dataset).eval()

    return build


@pytest.fixture(scope="session")
def tiny_tiger(make_tiger: Callable[..., Any]) -> Any:
    """The default tiny TIGER (1 + 1 layers, K = 16, beam 10), untrained, in eval mode."""
    return make_tiger()


@pytest.fixture(scope="session")
def tiny_batch(tiny_data: tuple[Any, ...]) -> Any:
    """The first evaluation batch of ``tiny``'s test split: an ``Interaction`` of every user (60)."""
    return next(iter(tiny_data[4]))[0]
