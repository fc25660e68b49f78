"""Multi-host fit: every process reads only its own groups; XLA all-reduces the sums.

Run the same command once per process (here: two processes on one machine, CPU):

    PYTHONPATH=. python examples/multi_host.py --process-id 0 --num-processes 2 &
    PYTHONPATH=. python examples/multi_host.py --process-id 1 --num-processes 2

On a cluster, start one process per host (e.g. under SLURM with ``srun``) and pass the
coordinator's ``host:port``; on GPUs ``jax.distributed.initialize()`` also works without
arguments under SLURM/MPI/TPU launchers. See ``docs/multi_device.md``.
"""

import argparse

import jax
import numpy as np

import mixedjax
from mixedjax import functional as F
from mixedjax.design.groups import group_crossprods
from mixedjax.fit.sharding import global_data_from_local, group_mesh


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--process-id", type=int, required=True)
    parser.add_argument("--num-processes", type=int, required=True)
    parser.add_argument("--coordinator", default="localhost:12355")
    args = parser.parse_args()
    jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)

    # 1. Each process reads its own groups only (here: a slice of sleepstudy's subjects;
    #    in practice its own files or database partition). Group codes are local.
    df = mixedjax.datasets.load("sleepstudy")
    subjects = np.sort(df["Subject"].unique())
    mine = subjects[args.process_id :: args.num_processes]
    local_df = df[df["Subject"].isin(mine)]
    codes = np.searchsorted(mine, local_df["Subject"].to_numpy())
    X = np.column_stack([np.ones(len(local_df)), local_df["Days"].to_numpy(float)])
    local = group_crossprods(local_df["Reaction"].to_numpy(float), X, X, codes, len(mine))

    # 2. One global array per field: per-group fields sharded over all devices of all
    #    processes, totals summed. Every process passes the same n_groups_per_process.
    n_per_process = -(-len(subjects) // args.num_processes)
    mesh = group_mesh(jax.devices())  # all devices of all processes
    data = global_data_from_local(local, mesh, n_per_process)

    # 3. The fit is an ordinary jitted function of the global data (SPMD on every process).
    fitted = jax.jit(F.fit)(data)
    if jax.process_index() == 0:
        print("theta", np.asarray(fitted.theta))
        print("beta ", np.asarray(fitted.beta))
        print("llf  ", -0.5 * float(fitted.objective))
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
