"""Train and evaluate TIGER, STREAM-Rec or any RecBole model with one config stack and one split.

    python run_recbole_streamrec.py --model=STREAMRec --dataset=ml-100k
    python run_recbole_streamrec.py --model=SASRec --dataset=amazon2018-scientific --config_files=a.yaml,b.yaml

Any other ``--key=value`` overrides a config key (RecBole reads them from the command line itself).
"""

import argparse
import json

from recbole_streamrec.quick_start import run

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", "-m", default="STREAMRec", help="TIGER, STREAMRec, or a RecBole model name")
    parser.add_argument("--dataset", "-d", default="ml-100k", help="a RecBole atomic dataset under data_path")
    parser.add_argument("--config_files", default=None, help="YAML files, comma or space separated")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint of this run")
    parser.add_argument("--eval_only", action="store_true", help="evaluate this run's best checkpoint, no training")
    parser.add_argument("--result_file", default=None, help="also write the results as JSON to this path")
    args, _ = parser.parse_known_args()
    files = args.config_files.replace(",", " ").split() if args.config_files else None
    result = run(args.model, args.dataset, config_file_list=files, resume=args.resume, eval_only=args.eval_only)
    if args.result_file:
        with open(args.result_file, "w") as f:
            json.dump(result, f, indent=2, default=float)
