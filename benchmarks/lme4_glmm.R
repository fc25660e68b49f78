# lme4's part of bench_glmm.py: glmer fits with lme4's default control.
#
# Usage: Rscript lme4_glmm.R CASE DATA.csv REPS
# CASE: slope (y ~ x + (x | g)), verbagg (crossed id x item) or many (y0, y1, ... each
# y ~ x + (1 | g); the first REPS columns are fitted in a loop, their total reported).
# Prints "COLD s" (library load + first fit), "WARM s" (best of REPS more fits; for many:
# the loop's total) and "LOGLIK x".
t_start <- as.numeric(Sys.time())
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
case <- args[1]
d <- read.csv(args[2])
reps <- as.integer(args[3])
fit <- switch(case,
  slope = function() {
    d$g <- factor(d$g)
    glmer(y ~ x + (x | g), data = d, family = binomial)
  },
  verbagg = function() {
    for (f in c("Gender", "btype", "situ", "id", "item")) d[[f]] <- factor(d[[f]])
    glmer(r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item), data = d,
          family = binomial)
  },
  many = function() {
    d$g <- factor(d$g)
    cols <- grep("^y", names(d), value = TRUE)[seq_len(reps)]
    fits <- lapply(cols, function(c) glmer(as.formula(paste(c, "~ x + (1 | g)")), data = d,
                                            family = binomial))
    fits[[1]]  # the first response's fit, as the Python side reports
  }
)
m <- fit()
cat(sprintf("COLD %.4f\n", as.numeric(Sys.time()) - t_start))
times <- numeric(0)
for (i in seq_len(if (case == "many") 1 else reps)) {
  times <- c(times, system.time(m <- fit())[["elapsed"]])
}
cat(sprintf("WARM %.4f\n", min(times)))
cat(sprintf("LOGLIK %.12f\n", as.numeric(logLik(m))))
