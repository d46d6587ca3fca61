"""W4: sum(sin(x) * x**2) with n=10: the per-call overhead."""
from suite import workload_tests
from workloads import sin_poly_workload

test_steady, test_first_call = workload_tests([sin_poly_workload(10)])
