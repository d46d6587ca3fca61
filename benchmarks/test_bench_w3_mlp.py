"""W3: MLP 784-256-10 loss, gradient w.r.t. all weights."""
from suite import workload_tests
from workloads import mlp_workload

test_steady, test_first_call = workload_tests([mlp_workload()])
