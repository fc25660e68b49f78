"""What every fit can do after fitting, written once for both engines: prediction,
simulation, the parametric bootstrap and plots. Each method is a thin front end of the
engine-aware function in :mod:`mixedjax.inference` or :mod:`mixedjax.display`."""

import numpy as np


class PostFitMethods:
    """Mixed into the results of either engine."""

    def predict(
        self,
        newdata=None,
        include_random: bool = True,
        allow_new_levels: bool = True,
        interval=None,
        alpha: float = 0.05,
        *,
        exog=None,
        exog_re=None,
        groups=None,
        offset=None,
    ):
        """Predictions ``x'β̂ + z'b̂ + offset`` with the BLUPs (``include_random=False``:
        ``x'β̂ + offset``).

        ``newdata`` (a DataFrame, formula models) or ``exog``/``exog_re``/``groups`` arrays
        (with ``offset`` for them if the model has one) give new rows; none gives the fit's
        rows. Unseen groups or levels get the population
        prediction (``allow_new_levels``). With ``interval="confidence"`` or
        ``"prediction"`` a DataFrame ``predicted, se, lower, upper`` comes back (Henderson's
        prediction-error variance; σ² added for ``"prediction"``), else an array.

        Example:
            >>> import mixedjax
            >>> df = mixedjax.datasets.load("sleepstudy")
            >>> m = mixedjax.MixedLM.from_formula("Reaction ~ Days", df, groups="Subject",
            ...                                   re_formula="~Days")
            >>> r = m.fit()
            >>> import pandas as pd
            >>> new = pd.DataFrame({"Days": [0, 10], "Subject": ["308", "unseen"]})
            >>> r.predict(new).round(2)  # subject 308's line, then the population line
            array([253.66, 356.08])
            >>> r.predict(new, interval="prediction").columns.tolist()
            ['predicted', 'se', 'lower', 'upper']
        """
        from mixedjax.inference.predict import predict

        return predict(
            self, newdata, include_random, allow_new_levels, interval, alpha, exog, exog_re,
            groups, offset,
        )  # fmt: skip

    def simulate(self, n: int = 1, seed: int = 0) -> np.ndarray:
        """``(n, nobs)`` responses simulated from the fitted model (new random effects and
        residuals; lme4's ``simulate``).

        Example:
            >>> import mixedjax
            >>> df = mixedjax.datasets.load("dyestuff")
            >>> r = mixedjax.MixedLM.from_formula("Yield ~ 1", df, groups="Batch").fit()
            >>> r.simulate(3, seed=0).shape  # 3 responses of 30 rows
            (3, 30)
        """
        from mixedjax.inference.predict import simulate_responses

        return simulate_responses(self, n, seed)

    # ------------------------------------------------------------- plots (mixedjax.display.plots)
    def plot_caterpillar(self, level: float = 0.95, **kwargs):
        """Caterpillar plot of the BLUPs with conditional intervals
        (:func:`mixedjax.display.plots.caterpillar`); returns the ``Figure``."""
        from mixedjax.display import plots

        return plots.caterpillar(self, level, **kwargs)

    def plot_residuals(self, **kwargs):
        """Residuals vs fitted (:func:`~mixedjax.display.plots.residuals_vs_fitted`); the Axes."""
        from mixedjax.display import plots

        return plots.residuals_vs_fitted(self, **kwargs)

    def plot_qq(self, **kwargs):
        """Normal QQ plot of standardised residuals (:func:`mixedjax.display.plots.qq`)."""
        from mixedjax.display import plots

        return plots.qq(self, **kwargs)

    def plot_diagnostics(self, **kwargs):
        """Residuals vs fitted and QQ side by side (:func:`mixedjax.display.plots.diagnostics`)."""
        from mixedjax.display import plots

        return plots.diagnostics(self, **kwargs)

    def plot_trajectories(self, time, **kwargs):
        """Observed and fitted trajectories per group over ``time``
        (:func:`mixedjax.display.plots.trajectories`); returns the ``Figure``."""
        from mixedjax.display import plots

        return plots.trajectories(self, time, **kwargs)

    def parametric_bootstrap(self, n: int = 1000, seed: int = 0, progress=None):
        """Parametric bootstrap: ``n`` simulated responses refitted in one vmapped batch;
        ``.replicates`` (lme4's sd/cor/sigma/fixed names) and ``.conf_int(alpha)``
        (percentile intervals); ``progress``: a bar per block of replicates.

        Example:
            >>> import mixedjax
            >>> df = mixedjax.datasets.load("dyestuff")
            >>> r = mixedjax.MixedLM.from_formula("Yield ~ 1", df, groups="Batch").fit()
            >>> boot = r.parametric_bootstrap(100, seed=1)
            >>> boot.conf_int().columns.tolist(), int(boot.converged.sum())
            (['lower', 'upper'], 100)
        """
        from mixedjax.inference.bootstrap import parametric_bootstrap

        return parametric_bootstrap(self, n, seed, progress=progress)
