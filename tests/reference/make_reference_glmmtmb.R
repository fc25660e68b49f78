# Reference fits of GLMMs with an estimated dispersion (Gamma), by glmmTMB's Laplace
# approximation: lme4's glmer does not estimate the dispersion inside its objective, so
# glmmTMB is the reference for these families.
# Usage: Rscript make_reference_glmmtmb.R OUTDIR   (writes OUTDIR/data/*.csv, OUTDIR/*.json)
# Needs: apt-get install -y r-cran-glmmtmb r-cran-jsonlite
suppressPackageStartupMessages({ library(glmmTMB); library(jsonlite) })
outdir <- commandArgs(trailingOnly = TRUE)[1]
dir.create(file.path(outdir, "data"), recursive = TRUE, showWarnings = FALSE)

# Gamma responses with the canonical (inverse) link: there the Laplace approximation of
# glmmTMB (observed information) and of lme4's PIRLS (Fisher weights) coincide.
set.seed(20261202)
n_groups <- 30; per_group <- 8
g <- factor(sprintf("g%02d", rep(seq_len(n_groups), each = per_group)))
x <- rnorm(n_groups * per_group)
eta <- 0.6 + 0.1 * x + rnorm(n_groups, 0, 0.08)[as.integer(g)]
shape <- 3
d <- data.frame(y = rgamma(length(x), shape = shape, rate = shape * eta), x = x, g = g)
write.csv(d, file.path(outdir, "data", "gamma_inverse.csv"), row.names = FALSE)

m <- glmmTMB(y ~ x + (1 | g), d, family = Gamma(link = "inverse"),
             start = list(beta = c(0.6, 0.1)))
stopifnot(m$fit$convergence == 0)
V <- as.matrix(vcov(m)$cond)
sd_g <- attr(VarCorr(m)$cond$g, "stddev")
out <- list(
  name = "glmm_gamma_inverse", source = paste("glmmTMB", packageVersion("glmmTMB")),
  data = "data/gamma_inverse.csv", lme4_formula = "y ~ x + (1 | g)",
  family = "Gamma", link = "inverse", nAGQ = 1, n_obs = nrow(d),
  fixed = list(names = names(fixef(m)$cond), estimate = unname(fixef(m)$cond),
               se = unname(sqrt(diag(V))), cov = unname(V)),
  random = list(list(group = "g", terms = list("(Intercept)"), cov = list(list(unname(sd_g)^2)))),
  dispersion = sigma(m)^2,
  loglik = as.numeric(logLik(m)), aic = AIC(m), bic = BIC(m),
  max_abs_gradient = max(abs(m$sdr$gradient.fixed))
)
write(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null"),
      file.path(outdir, "glmm_gamma_inverse.json"))
