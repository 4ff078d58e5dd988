"""Train and evaluate TIGER, STREAM-Rec or any RecBole model with one config stack and one split.

    python run_recbole_streamrec.py --model=STREAMRec --dataset=ml-100k
    python run_recbole_streamrec.py --model=SASRec --dataset=amazon2018-scientific --config_files=a.yaml,b.yaml
    python run_recbole_streamrec.py --model=TIGER --nproc=2                  # data-parallel: 2 processes (gloo / NCCL)
    torchrun --nproc_per_node=2 run_recbole_streamrec.py --model=TIGER       # the same, started by torchrun

Any other ``--key=value`` overrides a config key (RecBole reads them from the command line itself; list keys
take ``--stages=[pretrain,rl]`` or ``--stages=pretrain,rl``). Bad input (a config key, a dataset file, a
checkpoint) stops with one line saying what and where; ``--debug`` shows the traceback too.
"""

import argparse
import json
import logging
import os
import sys
from typing import Optional

from recbole_streamrec.errors import UserError
from recbole_streamrec.quick_start import run


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", "-m", default="STREAMRec", help="TIGER, STREAMRec, or a RecBole model name")
    parser.add_argument("--dataset", "-d", default="ml-100k", help="a RecBole atomic dataset under data_path")
    parser.add_argument("--config_files", default=None, help="YAML files, comma or space separated")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint of this run")
    parser.add_argument("--eval_only", action="store_true", help="evaluate this run's best checkpoint, no training")
    parser.add_argument("--result_file", default=None, help="also write the results as JSON to this path")
    parser.add_argument("--rank_file", default=None,
                        help="also write each test user's rank of the held-out item to this CSV (bench/paired_bootstrap.py)")
    parser.add_argument("--valid_rank_file", default=None,
                        help="the same for each validation user (of the best checkpoint)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an input error too")
    return parser.parse_known_args(argv)[0]


def _log_traceback(err: BaseException) -> None:
    """Keep the traceback of a user error in the run's log file (not on the console)."""
    root = logging.getLogger()
    record = root.makeRecord(root.name, logging.ERROR, __file__, 0, str(err), None, (type(err), err, err.__traceback__))
    for handler in root.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def main(argv: Optional[list[str]] = None) -> int:
    """Run one model; returns the exit status (2: bad input). ``argv`` is what argparse reads (default
    ``sys.argv[1:]``); RecBole's Config reads the ``--key=value`` overrides from ``sys.argv`` itself."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    files = args.config_files.replace(",", " ").split() if args.config_files else None
    for flag, path in (("--result_file", args.result_file), ("--rank_file", args.rank_file),
                       ("--valid_rank_file", args.valid_rank_file)):
        if path and not os.path.isdir(os.path.dirname(path) or "."):  # refused now, not after the training
            print(f"error: {flag}={path}: the folder {os.path.dirname(path)} does not exist", file=sys.stderr)
            return 2
    try:
        result = run(args.model, args.dataset, config_file_list=files, resume=args.resume, eval_only=args.eval_only,
                     rank_file=args.rank_file, valid_rank_file=args.valid_rank_file)
    except UserError as err:
        if args.debug:
            raise
        _log_traceback(err)
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.result_file and result is not None:  # None: a rank other than 0 of a torchrun launch
        with open(args.result_file, "w") as f:
            json.dump(result, f, indent=2, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
