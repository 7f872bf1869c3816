"""`python -m graphc.distributed.launch [--nproc_per_node=1] script.py [args]`: runs `script.py`
as the one process of a world of 1 (torch.distributed.launch's command line), with RANK=0,
LOCAL_RANK=0, WORLD_SIZE=1, MASTER_ADDR and MASTER_PORT in its environment and
`--local_rank=0` among its arguments (unless `--use_env`; `python -m graphc.distributed.run`,
torchrun's command line, never passes it). More than one process is an error: graphc.distributed
runs one (see its docstring)."""

from __future__ import annotations

import argparse
import os
import runpy
import sys


def parse(argv: list[str], prog: str = "python -m graphc.distributed.launch") -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog, description="Run a training script as the one process of a graphc.distributed world."
    )
    parser.add_argument("--nnodes", type=int, default=1)
    parser.add_argument("--node_rank", "--node-rank", type=int, default=0)
    parser.add_argument("--nproc_per_node", "--nproc-per-node", type=int, default=1)
    parser.add_argument("--master_addr", "--master-addr", default="127.0.0.1")
    parser.add_argument("--master_port", "--master-port", type=int, default=29500)
    parser.add_argument(
        "--use_env", "--use-env", action="store_true", help="pass LOCAL_RANK only in the environment"
    )
    parser.add_argument("training_script")
    parser.add_argument("training_script_args", nargs=argparse.REMAINDER)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, torchrun: bool = False) -> None:
    """`torchrun`: as torch.distributed.run (torchrun) does, LOCAL_RANK goes in the environment
    only, never as an argument."""
    prog = "python -m graphc.distributed.run" if torchrun else "python -m graphc.distributed.launch"
    args = parse(sys.argv[1:] if argv is None else argv, prog)
    args.use_env = args.use_env or torchrun
    processes = args.nnodes * args.nproc_per_node
    if processes != 1 or args.node_rank != 0:
        raise SystemExit(
            f"{prog}: {args.nnodes} node(s) x {args.nproc_per_node} process(es) "
            "asked for; graphc.distributed runs one process (world size 1): use --nproc_per_node=1"
        )
    os.environ.update(
        MASTER_ADDR=args.master_addr,
        MASTER_PORT=str(args.master_port),
        RANK="0",
        LOCAL_RANK="0",
        WORLD_SIZE="1",
        LOCAL_WORLD_SIZE="1",
    )
    extra = [] if args.use_env else ["--local_rank=0"]
    sys.argv = [args.training_script, *extra, *args.training_script_args]
    runpy.run_path(args.training_script, run_name="__main__")


if __name__ == "__main__":
    main()
