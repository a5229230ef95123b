"""The errors a user can cause and fix: main.py prints their message alone, without a traceback."""



from sintrovae_jax.data import kinds, point_files as point_data
from sintrovae_jax.evaluators import fid, inception
from sintrovae_jax.interop import points_checkpoint
from sintrovae_jax.io import hosts
from sintrovae_jax.program import config_lib, lease, workdir as workdir_lib


class TrainingDiverged(RuntimeError):
  """Too many consecutive non-finite steps; the last good checkpoint is left in place."""


# Errors a user can cause and fix: main.py prints their message alone, without a traceback.
USER_ERRORS = (config_lib.ConfigError, kinds.DataError, TrainingDiverged,
               workdir_lib.CheckpointError, lease.WorkdirLocked, lease.WorkdirError, fid.FidError,
               inception.WeightsError, point_data.PointDataError, points_checkpoint.StateDictError,
               hosts.HostError)
