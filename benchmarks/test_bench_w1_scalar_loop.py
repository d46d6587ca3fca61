"""W1: scalar Rosenbrock as a Python loop over x[i], n=100 and 1000."""
from suite import workload_tests
from workloads import rosenbrock_loop_workload

test_steady, test_first_call = workload_tests([rosenbrock_loop_workload(100), rosenbrock_loop_workload(1000)])
