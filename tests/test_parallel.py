"""The device mesh and joining a multi-host run."""

import pytest


def test_distributed_fields_are_given_together():
  from sagan_jax import parallel

  with pytest.raises(ValueError, match=r"config.distributed.num_processes, config.distributed.process_id unset"):
    parallel.initialize_distributed(True, coordinator_address="localhost:1234")
  with pytest.raises(ValueError, match=r"process_id=2 is not below num_processes=2"):
    parallel.initialize_distributed(True, "localhost:1234", 2, 2)
  with pytest.raises(ValueError, match=r"coordinator_address='node0': expected 'host:port'"):
    parallel.initialize_distributed(True, "node0", 2, 0)
  parallel.initialize_distributed(False, "ignored", 5, 9)  # disabled: nothing is checked or started
