"""Tasks: for each skill one object that owns its observation, action space and decoding,
reward and termination, acting through an ArmInterface. The gymnasium envs and the policy node
both drive episodes with these (panda-gym's Robot / Task / Env split)."""
