"""W5: Hessian-vector product of vectorized Rosenbrock, n=1000."""
from suite import workload_tests
from workloads import rosenbrock_hvp_workload

test_steady, test_first_call = workload_tests([rosenbrock_hvp_workload(1000)])
