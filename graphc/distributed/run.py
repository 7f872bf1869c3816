"""`python -m graphc.distributed.run [--nproc_per_node=1] script.py [args]`: torchrun's command
line (torch.distributed.run): as graphc.distributed.launch, with LOCAL_RANK in the environment
only."""

from graphc.distributed.launch import main

if __name__ == "__main__":
    main(torchrun=True)
