"""``scipy.stats.gaussian_kde`` (JAX's ``jax.scipy.stats.gaussian_kde``),
differentiable in the dataset, the weights and the points evaluated."""
from __future__ import annotations

import math
from typing import Any

import numpy as _np

from .. import numpy as fnp
from . import special as sc


class gaussian_kde:  # noqa: N801 - SciPy's name
    """A Gaussian kernel density estimate of ``dataset`` (d x n, or n points
    in 1-D) with Scott's or Silverman's bandwidth, a scalar factor or a
    callable of the estimate, as SciPy's."""

    def __init__(self, dataset: Any, bw_method: Any = None, weights: Any = None) -> None:
        self.dataset = fnp.atleast_2d(fnp.asarray(dataset))
        self.d, self.n = fnp.shape(self.dataset)
        if self.n < 2:
            raise ValueError("gaussian_kde needs more than one point")
        if weights is None:
            self.weights = fnp.full(self.n, 1.0 / self.n)
        else:
            w = fnp.asarray(weights)
            if fnp.ndim(w) != 1 or fnp.shape(w)[0] != self.n:
                raise ValueError("weights must be 1-D, one per point of the dataset")
            self.weights = w / fnp.sum(w)
        self.neff = 1.0 / fnp.sum(self.weights ** 2)
        self.set_bandwidth(bw_method)

    def scotts_factor(self) -> Any:
        return self.neff ** (-1.0 / (self.d + 4))

    def silverman_factor(self) -> Any:
        return (self.neff * (self.d + 2.0) / 4.0) ** (-1.0 / (self.d + 4))

    covariance_factor = scotts_factor

    def set_bandwidth(self, bw_method: Any = None) -> None:
        if bw_method is None or bw_method == "scott":
            self.covariance_factor = self.scotts_factor
        elif bw_method == "silverman":
            self.covariance_factor = self.silverman_factor
        elif callable(bw_method):
            self.covariance_factor = lambda: bw_method(self)
        elif _np.ndim(bw_method) == 0 and not isinstance(bw_method, str):
            self.covariance_factor = lambda: bw_method
        else:
            raise ValueError("bw_method should be 'scott', 'silverman', a scalar or a callable")
        self.factor = self.covariance_factor()
        mean = fnp.sum(self.dataset * self.weights, axis=1, keepdims=True)
        centred = self.dataset - mean
        # the weighted covariance with SciPy's (unbiased, aweights) correction
        data_cov = (centred * self.weights) @ centred.T / (1.0 - fnp.sum(self.weights ** 2))
        self.covariance = data_cov * self.factor ** 2
        self.inv_cov = fnp.linalg.inv(self.covariance)

    def logpdf(self, points: Any) -> Any:
        points = fnp.atleast_2d(fnp.asarray(points))
        if fnp.shape(points)[0] != self.d:
            if fnp.shape(points) == (1, self.d):
                points = points.T
            else:
                raise ValueError(f"points have dimension {fnp.shape(points)[0]}, the dataset "
                                 f"{self.d}")
        diff = self.dataset[:, :, None] - points[:, None, :]  # d x n x m
        maha = fnp.einsum("inm,ij,jnm->nm", diff, self.inv_cov, diff)
        _, logdet = fnp.linalg.slogdet(2 * math.pi * self.covariance)
        return sc.logsumexp(-0.5 * maha - 0.5 * logdet, axis=0, b=self.weights[:, None])

    def evaluate(self, points: Any) -> Any:
        return fnp.exp(self.logpdf(points))

    __call__ = pdf = evaluate
