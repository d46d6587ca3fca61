"""W2: vectorized Rosenbrock, n=1000 and 1,000,000."""
from suite import workload_tests
from workloads import rosenbrock_workload

test_steady, test_first_call = workload_tests([rosenbrock_workload(1000),
                                               rosenbrock_workload(10 ** 6)])
