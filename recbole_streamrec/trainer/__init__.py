from recbole_streamrec.trainer.checkpoint import SafeCheckpointMixin, load_checkpoint, with_safe_checkpoints
from recbole_streamrec.trainer.streamrec_trainer import STREAMRecTrainer
from recbole_streamrec.trainer.tiger_trainer import TIGERTrainer

__all__ = ["STREAMRecTrainer", "SafeCheckpointMixin", "TIGERTrainer", "load_checkpoint", "with_safe_checkpoints"]
